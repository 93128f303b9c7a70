"""Releases with freshness: which digest a tag names now, at which version, until when.

A tag is a name anyone with push access can move. A **release statement** binds it: the
publisher signs (under the namespace's trust root) and logs an in-toto statement about the
digest whose predicate is::

    {"namespace": "acme", "name": "hello", "tag": "1.0", "version": 7,
     "expires": "2027-01-06T00:00:00Z"}

``version`` increases monotonically across the whole package name (one counter per
``namespace/name``, like the version of TUF's targets metadata); ``expires`` bounds how long
the statement may be replayed (TUF's timestamp role: a frozen mirror cannot serve an old
release forever). The consumer remembers, per package name, the release it last accepted
for each tag and the highest version seen (``MOTTE_HOME/releases/``), and refuses:

- an **older** release of a tag than one it accepted (a rollback),
- an **expired** release,
- a tag that resolves to a digest the tag's **current release does not name** (the tag was
  moved, e.g. back to an old version the same publisher once signed),
- two different releases with one version number (equivocation).

``allow_rollback`` turns these refusals into loud warnings; each use is appended to
``MOTTE_HOME/releases/overrides.jsonl`` (time, package, tag, digest, what was overridden)
and the memory keeps the newer release.

The check is a pure function (:func:`check_release`) of the releases found, the memory and
the time; :func:`load_release_memory` and :func:`remember_release` are the I/O around it.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motte.fsutil import atomic_write_bytes, locked_directory
from motte.home import motte_home
from motte.sign._errors import EnvelopeFormatError, SigningUsageError
from motte.sign._predicates import RELEASE

DEFAULT_RELEASE_DAYS = 90
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _parse_time(text: object, where: str) -> dt.datetime:
    if not isinstance(text, str) or not text.endswith("Z"):
        raise EnvelopeFormatError(f"{where}: 'expires' must be an RFC 3339 UTC time ending in Z")
    try:
        return dt.datetime.fromisoformat(text[:-1] + "+00:00")
    except ValueError:
        raise EnvelopeFormatError(f"{where}: 'expires' {text!r} is not an RFC 3339 time") from None


@dataclass(frozen=True, slots=True)
class Release:
    namespace: str
    name: str
    tag: str
    version: int
    expires: dt.datetime

    def __post_init__(self) -> None:
        if not _TAG_RE.fullmatch(self.tag):
            raise SigningUsageError(f"tag {self.tag!r} is not valid")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise SigningUsageError(f"release version {self.version!r} must be an integer >= 1")

    @property
    def package(self) -> str:
        return f"{self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "tag": self.tag,
            "version": self.version,
            "expires": _rfc3339(self.expires),
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any], where: str) -> Release:
        fields = {}
        for key in ("namespace", "name", "tag"):
            value = obj.get(key)
            if not isinstance(value, str) or not value:
                raise EnvelopeFormatError(f"{where}: '{key}' must be a non-empty string")
            fields[key] = value
        version = obj.get("version")
        try:
            return cls(
                fields["namespace"],
                fields["name"],
                fields["tag"],
                version,  # type: ignore[arg-type]  # checked in __post_init__
                _parse_time(obj.get("expires"), where),
            )
        except SigningUsageError as e:
            raise EnvelopeFormatError(f"{where}: {e.message}") from None


# -- the consumer's memory ----------------------------------------------------------------


def releases_dir() -> Path:
    return motte_home() / "releases"


def _memory_file(package: str) -> Path:
    return releases_dir() / (hashlib.sha256(package.encode()).hexdigest()[:32] + ".json")


@dataclass(frozen=True, slots=True)
class SeenRelease:
    version: int
    digest: str
    expires: str
    seen: str  # when this installation first accepted it


@dataclass(frozen=True, slots=True)
class ReleaseMemory:
    package: str
    highest: int = 0
    tags: dict[str, SeenRelease] = field(default_factory=dict)

    def version_owner(self, version: int) -> tuple[str, SeenRelease] | None:
        for tag, seen in self.tags.items():
            if seen.version == version:
                return tag, seen
        return None


def load_release_memory(package: str) -> ReleaseMemory:
    path = _memory_file(package)
    if not path.exists():
        return ReleaseMemory(package)
    try:
        obj = json.loads(path.read_bytes())
        tags = {
            str(t): SeenRelease(
                int(v["version"]), str(v["digest"]), str(v["expires"]), str(v["seen"])
            )
            for t, v in obj["tags"].items()
        }
        return ReleaseMemory(package, int(obj["highest"]), tags)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise EnvelopeFormatError(
            f"{path}: the release memory of {package} is damaged",
            hint="restore it from a backup; deleting it forgets which releases you saw",
        ) from None


def remember_release(release: Release, digest: str, *, now: dt.datetime) -> ReleaseMemory:
    """Record an accepted release (never lowering what is remembered); return the memory."""
    with locked_directory(releases_dir()):
        mem = load_release_memory(release.package)
        tags = dict(mem.tags)
        current = tags.get(release.tag)
        if current is None or current.version < release.version:
            tags[release.tag] = SeenRelease(
                release.version, digest, _rfc3339(release.expires), _rfc3339(now)
            )
        updated = ReleaseMemory(release.package, max(mem.highest, release.version), tags)
        doc = {
            "package": updated.package,
            "highest": updated.highest,
            "tags": {
                t: {"version": s.version, "digest": s.digest, "expires": s.expires, "seen": s.seen}
                for t, s in sorted(tags.items())
            },
        }
        atomic_write_bytes(_memory_file(release.package), json.dumps(doc, indent=1).encode())
    return updated


def overrides_file() -> Path:
    return releases_dir() / "overrides.jsonl"


def record_override(
    package: str, tag: str, digest: str, refused: str, *, now: dt.datetime, command: str
) -> Path:
    """Append one ``--allow-rollback`` use to the audit file; return its path."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    line = json.dumps(
        {
            "time": _rfc3339(now),
            "user": user,
            "command": command,
            "package": package,
            "tag": tag,
            "digest": digest,
            "overridden": refused,
        },
        sort_keys=True,
    )
    path = overrides_file()
    with locked_directory(releases_dir()):
        old = path.read_bytes() if path.exists() else b""
        atomic_write_bytes(path, old + line.encode() + b"\n")
    return path


# -- the check -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedRelease:
    """A release statement about the digest, with the publisher keys that signed it."""

    release: Release
    signers: tuple[str, ...]
    statement: str = ""  # a reference for messages (referrer or statement digest)


@dataclass(frozen=True, slots=True)
class ReleaseCheck:
    """The outcome: ``status`` is "fresh" (bound, current), "unbound" (no release exists for
    this package anywhere known: freshness unknown) or "refused"."""

    status: str
    message: str
    release: Release | None = None
    #: The refusal ``allow_rollback`` overrode (the status is then "fresh").
    overridden: str | None = None

    @property
    def refused(self) -> bool:
        return self.status == "refused"


def check_release(
    package: str,
    tag: str,
    digest: str,
    found: Sequence[SignedRelease],
    memory: ReleaseMemory,
    *,
    threshold: int,
    now: dt.datetime,
    allow_rollback: bool = False,
) -> ReleaseCheck:
    """Is ``digest`` the current release of ``package:tag``? (see the module docstring)

    ``found`` holds the release statements about ``digest`` signed by the namespace's
    publisher keys (each signature verified, each statement logged); a release counts when
    ``threshold`` distinct keys signed that same release.
    """
    ns, _, name = package.partition("/")
    ours = [r for r in found if (r.release.namespace, r.release.name) == (ns, name)]
    by_release: dict[Release, set[str]] = {}
    for r in ours:
        by_release.setdefault(r.release, set()).update(r.signers)
    counted = [rel for rel, keys in by_release.items() if len(keys) >= threshold]
    for_tag = sorted((r for r in counted if r.tag == tag), key=lambda r: r.version)
    short = digest[:19]
    seen = memory.tags.get(tag)

    def refuse(why: str, release: Release | None = None) -> ReleaseCheck:
        if allow_rollback:
            return ReleaseCheck("fresh", f"ALLOWED BY --allow-rollback: {why}", release, why)
        return ReleaseCheck("refused", why, release)

    if not for_tag:
        if seen is not None:
            return refuse(
                f"{package}:{tag} resolves to {short}, but its current release (version "
                f"{seen.version}, accepted {seen.seen[:10]}) names {seen.digest[:19]}: the tag "
                "was moved"
            )
        others = sorted(counted, key=lambda r: r.version)
        if others:
            names = ", ".join(f":{r.tag} (version {r.version})" for r in others)
            return refuse(
                f"{package}:{tag} resolves to {short}, which is released as {names}, not "
                f":{tag}: the tag was moved"
            )
        if memory.highest:
            return refuse(
                f"{package}:{tag} resolves to {short}, which no release binds, and {package} "
                f"is released (versions up to {memory.highest} seen): the tag is not bound"
            )
        return ReleaseCheck(
            "unbound",
            f"no release statement binds {package}:{tag}: its freshness is not known "
            "(the publisher can bind it: motte release REF --key KEY)",
        )
    release = for_tag[-1]
    if release.expires <= now:
        return refuse(
            f"release version {release.version} of {package}:{tag} expired at "
            f"{_rfc3339(release.expires)}: it may be a stale copy",
            release,
        )
    if seen is not None and seen.version > release.version:
        return refuse(
            f"{package}:{tag} release version {release.version} is older than version "
            f"{seen.version} accepted {seen.seen[:10]} ({seen.digest[:19]}): a rollback",
            release,
        )
    if seen is not None and seen.version == release.version and seen.digest != digest:
        return refuse(
            f"{package}:{tag} release version {release.version} names {short}, but the "
            f"version {release.version} accepted before names {seen.digest[:19]}: two releases "
            "with one version",
            release,
        )
    owner = memory.version_owner(release.version)
    if owner is not None and owner[0] != tag:
        return refuse(
            f"{package} release version {release.version} was accepted before for :{owner[0]} "
            f"({owner[1].digest[:19]}), not :{tag}: two releases with one version",
            release,
        )
    return ReleaseCheck(
        "fresh",
        f"{package}:{tag} is release version {release.version}, current (expires "
        f"{_rfc3339(release.expires)[:10]}"
        + (f"; version {seen.version} seen before)" if seen else "; first release seen)"),
        release,
    )


def releases_in(
    statements: Iterable[tuple[str, dict[str, Any], tuple[str, ...], str]],
    publisher_keyids: Iterable[str],
) -> list[SignedRelease]:
    """(predicate type, predicate, verified signers, label) -> the releases publishers signed."""
    allowed = set(publisher_keyids)
    out = []
    for ptype, predicate, signers, label in statements:
        if ptype != RELEASE:
            continue
        mine = tuple(k for k in signers if k in allowed)
        if not mine:
            continue
        try:
            release = Release.from_dict(predicate, label)
        except EnvelopeFormatError:
            continue
        out.append(SignedRelease(release, mine, label))
    return out


def next_version(package: str, requested: int | None) -> int:
    """The version a new release gets: ``requested``, which must exceed every version this
    installation has seen or made for ``package``, or one more than the highest."""
    mem = load_release_memory(package)
    if requested is None:
        return mem.highest + 1
    if requested <= mem.highest:
        raise SigningUsageError(
            f"release version {requested} of {package} is not above version {mem.highest}, "
            "the highest seen here",
            hint="release versions only go up (consumers refuse an older one); omit --version "
            "to take the next",
        )
    return requested
