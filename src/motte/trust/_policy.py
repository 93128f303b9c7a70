"""A consumer's trust policy: a TOML file -> :class:`Policy`, or an error naming key and line.

The policy says which of the five areas must be satisfied and whom the consumer trusts for
each: builders (SLSA signer-builder pairs), rebuilders, advisory sources, auditors. There is
no "trusted" flag and no score: only requirements, and the parties whose evidence counts.

    require = ["build", "integrity", "responsiveness", "provenance", "expertise"]

    [build]
    reproducible = true            # needs matching rebuilds by [[build.rebuilders]]
    min_rebuilds = 1
    failed_rebuild = "refuse"      # a named rebuilder could not rebuild it: or "unknown", "note"
    [[build.builders]]
    id = "https://ci.example.org/builders/v1"
    keys = ["MCowBQYDK2VwAyEA..."]   # base64 DER public keys, or PEM
    [[build.builders]]               # or keyless: Sigstore identities with their issuer
    id = "https://github.com/actions/runner/github-hosted"
    identities = [{identity = "https://github.com/acme/hello/.github/workflows/release.yml@refs/heads/main",
                   issuer = "https://token.actions.githubusercontent.com"}]

    [integrity]
    unchecked_source = "unknown"   # the source could not be asked for its commit: or "note"

    [responsiveness]
    refuse_open_advisories = true  # a version an advisory names is refused
    max_advisory_age_days = 30     # an advisory left without a fixed release longer fails

    [provenance]
    sensitive = ["Motte.toml"]     # layers a signer new to the package may not change

    [expertise]
    max_audit_age_days = 365
    [[expertise.auditors]]
    name = "audits.example.org"
    keys = ["..."]

Keys are written into the policy itself, so the policy's digest (SHA-256 of the file) names
everything it trusts. Unknown keys, wrong types and requirements that can never be met are
errors naming the file, the line and the key, with the manifest's key locator.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motte._toml import (
    Invalid,
    KeyPath,
    check_keys,
    format_path,
    key_lines,
    location,
    parse_toml,
    read_text,
)
from motte.sign import KeylessIdentity, PublicKey, SignError
from motte.trust._errors import PolicyError

AREAS = ("build", "integrity", "responsiveness", "provenance", "expertise")
#: What a failed rebuild by a rebuilder the policy names does to build: not satisfied
#: (the default), unknown, or only a note.
FAILED_REBUILD = ("refuse", "unknown", "note")
#: What integrity.source says when the recorded source cannot be asked for its commit.
UNCHECKED_SOURCE = ("unknown", "note")
#: A policy is a page of TOML, not a data file.
MAX_POLICY_BYTES = 1024 * 1024
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_PEM_RE = re.compile(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", re.S)


@dataclass(frozen=True, slots=True)
class Party:
    """Someone the consumer trusts for one kind of evidence: a name (a label) and keys, or
    keyless Sigstore identities (certificate identity + OIDC issuer)."""

    name: str
    keys: tuple[PublicKey, ...]
    identities: tuple[KeylessIdentity, ...] = ()

    @property
    def keyids(self) -> frozenset[str]:
        """Keyids, and identity ids (which stand where a keyid would)."""
        return frozenset([*(k.keyid for k in self.keys), *(i.id for i in self.identities)])


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed trust policy. ``digest`` is the SHA-256 of the file's bytes."""

    name: str
    digest: str
    require: frozenset[str]
    builders: tuple[Party, ...] = ()  # Party.name is the builder id (a URI)
    reproducible: bool = False
    min_rebuilds: int = 1
    rebuilders: tuple[Party, ...] = ()
    failed_rebuild: str = "refuse"
    unchecked_source: str = "unknown"
    refuse_open_advisories: bool = True
    max_advisory_age_days: int | None = None
    advisors: tuple[Party, ...] = ()
    sensitive: tuple[str, ...] = ()
    min_audits: int = 1
    max_audit_age_days: int | None = 365
    auditors: tuple[Party, ...] = ()
    path: Path | None = None

    def keys(self) -> list[PublicKey]:
        """Every key the policy names, once each."""
        seen: dict[str, PublicKey] = {}
        for party in (*self.builders, *self.rebuilders, *self.advisors, *self.auditors):
            for k in party.keys:
                seen.setdefault(k.keyid, k)
        return list(seen.values())

    def identities(self) -> list[KeylessIdentity]:
        """Every keyless identity the policy names, once each."""
        seen: dict[str, KeylessIdentity] = {}
        for party in (*self.builders, *self.rebuilders, *self.advisors, *self.auditors):
            for i in party.identities:
                seen.setdefault(i.id, i)
        return list(seen.values())


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), "an array" if isinstance(value, list) else "a table"
    )


def _table(value: Any, path: KeyPath) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(path, f"expected a table, got {_kind(value)}")
    return value


def _bool(table: Mapping[str, Any], key: str, path: KeyPath, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise Invalid((*path, key), f"expected true or false, got {_kind(value)}")
    return value


def _count(table: Mapping[str, Any], key: str, path: KeyPath, default: int | None) -> int | None:
    value = table.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 100_000:
        raise Invalid((*path, key), f"expected a whole number from 1 to 100000, got {value!r}")
    return value


def _choice(table: Mapping[str, Any], key: str, path: KeyPath, choices: tuple[str, ...]) -> str:
    value = table.get(key, choices[0])
    if value not in choices:
        raise Invalid(
            (*path, key), f"expected one of {', '.join(map(repr, choices))}, got {value!r}"
        )
    return str(value)


def _str(value: Any, path: KeyPath) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(path, f"expected a non-empty string, got {_kind(value)}")
    return value


def _key(value: Any, path: KeyPath) -> PublicKey:
    text = _str(value, path)
    m = _PEM_RE.search(text)
    body = "".join((m.group(1) if m else text).split())
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(
            path,
            "not a public key: expected base64 DER (the text between the PEM lines) or a PEM",
            hint="motte key show NAME prints the PEM",
        ) from None
    try:
        return PublicKey.from_spki_der(der, format_path(path))
    except SignError as e:
        # "not a DER SubjectPublicKeyInfo: Could not deserialize ... Details: ..." -> its
        # first sentence is enough to say what is wrong.
        reason = e.message.split(": ", 1)[-1].split(". ")[0].split(": Could not")[0]
        raise Invalid(path, reason, hint="motte key show NAME prints the PEM") from None


def _parties(table: Mapping[str, Any], key: str, path: KeyPath, label: str) -> tuple[Party, ...]:
    value = table.get(key, [])
    p = (*path, key)
    if not isinstance(value, list):
        raise Invalid(p, f"expected an array of tables ([[{format_path(p)}]]), got {_kind(value)}")
    out = []
    for i, entry in enumerate(value):
        e = _table(entry, (*p, i))
        check_keys(e, {label, "keys", "identities"}, (*p, i))
        if label not in e:
            raise Invalid((*p, i), f"missing required key {label!r}")
        name = _str(e[label], (*p, i, label))
        if label == "id" and not _URI_RE.fullmatch(name):
            raise Invalid((*p, i, "id"), f"builder id {name!r} is not a URI")
        identities = _identities(e.get("identities", []), (*p, i, "identities"))
        keys = e.get("keys", [] if identities else None)
        if not isinstance(keys, list) or not (keys or identities):
            raise Invalid(
                (*p, i, "keys"),
                "expected a non-empty array of public keys (or keyless identities)",
            )
        parsed = tuple(_key(k, (*p, i, "keys", j)) for j, k in enumerate(keys))
        out.append(Party(name, parsed, identities))
    return tuple(out)


def _identities(value: Any, path: KeyPath) -> tuple[KeylessIdentity, ...]:
    """``[{identity = "...", issuer = "..."}, ...]``: Sigstore signers, always with issuer."""
    if not isinstance(value, list):
        raise Invalid(path, f"expected an array of {{identity, issuer}} tables, got {_kind(value)}")
    out = []
    for j, entry in enumerate(value):
        e = _table(entry, (*path, j))
        check_keys(e, {"identity", "issuer"}, (*path, j))
        for field_name in ("identity", "issuer"):
            if field_name not in e:
                raise Invalid(
                    (*path, j),
                    f"missing required key {field_name!r}",
                    hint="a keyless signer is an identity with its OIDC issuer",
                )
        try:
            out.append(
                KeylessIdentity.parse(
                    _str(e["identity"], (*path, j, "identity")),
                    _str(e["issuer"], (*path, j, "issuer")),
                    format_path((*path, j)),
                )
            )
        except SignError as err:
            raise Invalid((*path, j), err.message.split(": ", 1)[-1], hint=err.hint) from None
    return tuple(out)


def _require(value: Any) -> frozenset[str]:
    if not isinstance(value, list):
        raise Invalid(("require",), f"expected an array of area names, got {_kind(value)}")
    for i, area in enumerate(value):
        if area not in AREAS:
            close = difflib.get_close_matches(str(area), AREAS, n=1)
            raise Invalid(
                ("require", i),
                f"{area!r} is not an area (areas: {', '.join(AREAS)})",
                f"did you mean {close[0]!r}?" if close else None,
            )
    return frozenset(value)


def policy_from_dict(data: Mapping[str, Any], *, name: str, digest: str) -> Policy:
    """Validate parsed TOML; raises :class:`Invalid` (turned into PolicyError by the caller)."""
    check_keys(data, {"require", *AREAS}, ())
    require = _require(data.get("require", list(AREAS)))
    integrity = _table(data.get("integrity", {}), ("integrity",))
    check_keys(integrity, {"unchecked_source"}, ("integrity",))
    build = _table(data.get("build", {}), ("build",))
    check_keys(
        build,
        {"builders", "reproducible", "min_rebuilds", "rebuilders", "failed_rebuild"},
        ("build",),
    )
    resp = _table(data.get("responsiveness", {}), ("responsiveness",))
    check_keys(
        resp, {"refuse_open_advisories", "max_advisory_age_days", "advisors"}, ("responsiveness",)
    )
    prov = _table(data.get("provenance", {}), ("provenance",))
    check_keys(prov, {"sensitive"}, ("provenance",))
    exp = _table(data.get("expertise", {}), ("expertise",))
    check_keys(exp, {"auditors", "min_audits", "max_audit_age_days"}, ("expertise",))

    sensitive = prov.get("sensitive", [])
    if not isinstance(sensitive, list):
        raise Invalid(("provenance", "sensitive"), "expected an array of layer names or globs")
    patterns = tuple(_str(s, ("provenance", "sensitive", i)) for i, s in enumerate(sensitive))

    policy = Policy(
        name=name,
        digest=digest,
        require=require,
        builders=_parties(build, "builders", ("build",), "id"),
        reproducible=_bool(build, "reproducible", ("build",), False),
        min_rebuilds=_count(build, "min_rebuilds", ("build",), 1) or 1,
        rebuilders=_parties(build, "rebuilders", ("build",), "name"),
        failed_rebuild=_choice(build, "failed_rebuild", ("build",), FAILED_REBUILD),
        unchecked_source=_choice(integrity, "unchecked_source", ("integrity",), UNCHECKED_SOURCE),
        refuse_open_advisories=_bool(resp, "refuse_open_advisories", ("responsiveness",), True),
        max_advisory_age_days=_count(resp, "max_advisory_age_days", ("responsiveness",), None),
        advisors=_parties(resp, "advisors", ("responsiveness",), "name"),
        sensitive=patterns,
        min_audits=_count(exp, "min_audits", ("expertise",), 1) or 1,
        max_audit_age_days=_count(exp, "max_audit_age_days", ("expertise",), 365),
        auditors=_parties(exp, "auditors", ("expertise",), "name"),
    )
    _check_satisfiable(policy, data)
    return policy


def _check_satisfiable(p: Policy, data: Mapping[str, Any]) -> None:
    """A required area whose evidence could never count is a mistake in the policy."""
    if "build" in p.require and not p.builders:
        raise Invalid(
            ("build",) if "build" in data else ("require",),
            "build is required but no [[build.builders]] are trusted",
            hint="name the builders whose provenance you accept, or drop build from require",
        )
    if p.reproducible and len(p.rebuilders) < p.min_rebuilds:
        raise Invalid(
            ("build", "reproducible"),
            f"needs {p.min_rebuilds} independent rebuild(s) but the policy names "
            f"{len(p.rebuilders)} [[build.rebuilders]]",
            hint="name your rebuilders (your own key counts: motte rebuild REF --attest KEY)",
        )
    if "expertise" in p.require and len(p.auditors) < p.min_audits:
        raise Invalid(
            ("expertise",) if "expertise" in data else ("require",),
            f"expertise is required ({p.min_audits} audit(s)) but the policy names "
            f"{len(p.auditors)} [[expertise.auditors]]",
            hint="name the auditors whose reviews you accept, or drop expertise from require",
        )


def parse_policy(text: str, *, name: str, digest: str | None = None) -> Policy:
    """A Policy from TOML text; ``name`` is how errors name the file."""
    digest = digest or "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    data = parse_toml(text, source=name, error=PolicyError)
    try:
        return policy_from_dict(data, name=name, digest=digest)
    except Invalid as e:
        where = location(name, key_lines(text), e.path)
        raise PolicyError(f"{where}: {e.reason}", hint=e.hint) from None


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file."""
    import dataclasses

    p = Path(path)
    text = read_text(p, what="trust policy", max_bytes=MAX_POLICY_BYTES, error=PolicyError)
    raw = text.encode("utf-8")
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    policy = parse_policy(text, name=str(p), digest=digest)
    return dataclasses.replace(policy, path=p.absolute())
