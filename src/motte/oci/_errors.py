"""Errors of motte.oci, split by who is at fault (as h11 splits Local and Remote).

A *local* error is the caller's: a malformed reference, a package directory without a module,
plain HTTP to a remote host. A *remote* error is the content's or the peer's: a blob whose bytes
do not hash to its digest, a manifest that is not a motte workload, a registry that answered
out of protocol or refused the credentials.
"""

from __future__ import annotations

from motte.errors import (
    ConfigError,
    MotteError,
    NotFoundError,
    ParseError,
    RemoteError,
    UsageError,
    VerificationError,
)


class OciError(MotteError):
    """Base of every motte.oci error."""


class ReferenceSyntaxError(OciError, UsageError):
    """A reference that does not parse: names the reference and the part that is wrong."""


class PackageError(OciError, ConfigError):
    """A workload directory that cannot be packaged (no Motte.toml, no module, a bad path)."""


class ArtifactNotFoundError(OciError, NotFoundError):
    """A tag, digest or blob that is not in the store or the registry."""


class DigestMismatchError(OciError, VerificationError):
    """Bytes that do not hash to the digest (or size) that names them.

    ``what`` says which object ("layer Motte.toml", "manifest", "referrer ... layer 0").
    """

    def __init__(self, what: str, expected: str, actual: str, *, hint: str | None = None) -> None:
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {actual}", hint=hint)
        self.what = what
        self.expected = expected
        self.actual = actual


class MalformedArtifactError(OciError, ParseError):
    """A manifest, index or config that is not valid JSON of the expected shape."""


class TooLargeError(OciError, RemoteError):
    """Content larger than the bound set for its kind (a manifest, a module, a referrer list)."""


class RegistryError(OciError, RemoteError):
    """A registry answered with an error or out of protocol; names the request and status."""


class AuthError(RegistryError):
    """The registry refused the credentials, or asked for some and none were found."""


class InsecureTransportError(OciError, UsageError):
    """Plain HTTP to a host that is not loopback, without the flag that names the danger."""
