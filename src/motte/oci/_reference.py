"""Artifact references: ``[scheme://][registry/]namespace/name[:tag][@sha256:<hex>]``.

- ``acme/hello:1.0`` names an artifact in the local store (an OCI image layout under
  ``MOTTE_HOME/oci``).
- ``registry.example.com/acme/hello:1.0`` names one in a registry, over HTTPS. The first
  component is a registry when it contains a ``.`` or a ``:`` or is ``localhost`` (Docker's
  rule, so references read the same as everywhere else).
- ``http://127.0.0.1:5000/acme/hello:1.0``: plain HTTP must be written out, and is allowed
  only to a loopback address unless the caller passes ``allow_insecure_http``.
- A namespace is required: it is what a trust root delegates to publisher keys.
- With a digest, the tag (if any) is informational and the digest decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from motte._net import is_loopback_host
from motte.oci._digest import is_digest
from motte.oci._errors import InsecureTransportError, ReferenceSyntaxError

#: OCI distribution path component grammar.
_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_HOST_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
DEFAULT_TAG = "latest"
_MAX_REFERENCE = 512


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference. ``registry`` is None for the local store."""

    namespace: str
    name: str
    tag: str | None = None
    digest: str | None = None
    registry: str | None = None
    scheme: str | None = None  # "https" or "http" when registry is set

    @property
    def repository(self) -> str:
        """``namespace/name``: the repository path in a registry and the local store."""
        return f"{self.namespace}/{self.name}"

    @property
    def is_local(self) -> bool:
        return self.registry is None

    @property
    def base_url(self) -> str:
        if self.registry is None:
            raise ValueError("a local reference has no registry URL")
        return f"{self.scheme}://{self.registry}"

    def with_digest(self, digest: str) -> Reference:
        """The same artifact pinned to ``digest`` (the tag kept as a label)."""
        return Reference(self.namespace, self.name, self.tag, digest, self.registry, self.scheme)

    def local(self) -> Reference:
        """The name the local store keeps this artifact under (registry dropped)."""
        return Reference(self.namespace, self.name, self.tag, self.digest)

    def __str__(self) -> str:
        prefix = ""
        if self.registry is not None:
            prefix = ("http://" if self.scheme == "http" else "") + self.registry + "/"
        out = prefix + self.repository
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    @property
    def pinned(self) -> str:
        """``[registry/]namespace/name@digest`` (requires a digest)."""
        assert self.digest is not None
        return str(
            Reference(self.namespace, self.name, None, self.digest, self.registry, self.scheme)
        )


def parse_reference(text: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse ``text``; a reference with neither tag nor digest gets ``default_tag``."""
    if not text or len(text) > _MAX_REFERENCE:
        raise ReferenceSyntaxError(f"reference {text!r}: empty or longer than {_MAX_REFERENCE}")

    def bad(reason: str, hint: str | None = None) -> ReferenceSyntaxError:
        return ReferenceSyntaxError(
            f"reference {text!r}: {reason}",
            hint=hint or "write [http://|https://][REGISTRY/]NAMESPACE/NAME[:TAG][@sha256:HEX]",
        )

    rest = text
    scheme: str | None = None
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        if scheme not in ("http", "https"):
            raise bad(f"scheme {scheme!r} is not http or https")

    digest: str | None = None
    if "@" in rest:
        rest, digest = rest.rsplit("@", 1)
        if not is_digest(digest):
            raise bad(f"{digest!r} is not a sha256 digest (sha256: and 64 lowercase hex digits)")

    parts = rest.split("/")
    registry: str | None = None
    if scheme is not None or (
        len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost")
    ):
        registry = parts.pop(0)
        if not _HOST_RE.fullmatch(registry):
            raise bad(f"registry {registry!r} is not a host[:port]")
        scheme = scheme or "https"

    tag: str | None = None
    if parts and ":" in parts[-1]:
        parts[-1], tag = parts[-1].split(":", 1)
        if not _TAG_RE.fullmatch(tag):
            raise bad(f"tag {tag!r} is not valid (letters, digits, . _ -; at most 128)")
    if len(parts) < 2:
        raise bad(
            "needs a namespace and a name",
            hint="write NAMESPACE/NAME (the namespace is what a trust root delegates to keys)",
        )
    for comp in parts:
        if not _COMPONENT_RE.fullmatch(comp):
            raise bad(f"path component {comp!r} must be lowercase letters and digits, . _ -")
    if "." in parts[0]:
        # It would read as a registry host once the registry is dropped (the local name).
        raise bad(f"namespace {parts[0]!r} must not contain '.' (it would read as a registry)")
    if tag is None and digest is None:
        tag = default_tag
    return Reference("/".join(parts[:-1]), parts[-1], tag, digest, registry, scheme)


def is_loopback(host_port: str) -> bool:
    """Whether a registry's ``host[:port]`` (``[v6]:port`` too) is this machine."""
    host = host_port
    if host.startswith("["):
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return is_loopback_host(host)


def check_transport(ref: Reference, *, allow_insecure_http: bool = False) -> None:
    """Refuse plain HTTP to anything but loopback unless the danger was asked for by name."""
    if ref.scheme == "http" and not is_loopback(ref.registry or "") and not allow_insecure_http:
        raise InsecureTransportError(
            f"{ref}: plain HTTP to {ref.registry} would send credentials and content unprotected",
            hint="use https://, or pass --allow-insecure-http if you really mean it",
        )
