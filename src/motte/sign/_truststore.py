"""Trust roots a verifier has installed, and the publisher policy they give a namespace.

``MOTTE_HOME/trust-roots/<name>/N.root.json``: one directory per root, holding the versions
this installation accepted, from the one it was given first (its anchor) onwards.
``motte key root trust DIR`` installs a root or extends an installed one, and only with
versions that chain from what is installed. A namespace delegated by two installed roots is
an error, not a choice: whose keys count must never depend on directory order.

The root directories a publisher works in (``motte key root init DIR`` ...) have the same
layout plus, while a new version waits for signatures, ``staged.root.json``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from motte.fsutil import atomic_write_bytes
from motte.home import motte_home
from motte.sign._errors import SigningUsageError, TrustRootError
from motte.sign._keys import PrivateKey, PublicKey
from motte.sign._trustroot import (
    STAGED_FILE,
    KeylessIdentity,
    RootDocument,
    RootMetadata,
    chain_files,
    load_chain,
    verify_chain,
)

_ROOT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def trust_roots_dir() -> Path:
    return motte_home() / "trust-roots"


@dataclass(frozen=True, slots=True)
class PublisherPolicy:
    """Which keys (and keyless identities) may publish a namespace, how many must, and who
    said so. A threshold counts keys and identities alike."""

    keys: tuple[PublicKey, ...]
    threshold: int
    source: str
    #: The installed root's directory of versions (None for pinned keys): where the history
    #: of the namespace's delegations can be read.
    chain_dir: Path | None = None
    #: Sigstore signers (certificate identity + OIDC issuer) the root names as publishers.
    identities: tuple[KeylessIdentity, ...] = ()

    @property
    def ids(self) -> frozenset[str]:
        """The keyids and identity ids that count towards the threshold."""
        return frozenset([*(k.keyid for k in self.keys), *(i.id for i in self.identities)])

    def name_of(self, signer: str) -> str:
        """How to show a signer: an identity by its name, a key by its short keyid."""
        for i in self.identities:
            if i.id == signer:
                return i.label
        return signer[:16]


def policy_from_keys(keys: Sequence[PublicKey]) -> PublisherPolicy:
    """Pinned keys (``--key``): any one of them suffices."""
    if not keys:
        raise SigningUsageError("no keys given")
    return PublisherPolicy(tuple(keys), 1, "pinned keys " + ", ".join(k.keyid[:16] for k in keys))


def root_chain_dirs(directory: Path) -> list[Path]:
    """``directory`` itself if it holds ``N.root.json`` files, else each subdirectory that does."""
    if not directory.is_dir():
        return []
    if chain_files(directory):
        return [directory]
    return sorted(d for d in directory.iterdir() if d.is_dir() and chain_files(d))


def policy_for_namespace(
    namespace: str, directory: Path | None = None, *, now: dt.datetime
) -> PublisherPolicy:
    """The publisher keys and threshold the installed roots delegate ``namespace`` to."""
    directory = directory or trust_roots_dir()
    chains = root_chain_dirs(directory)
    if not chains:
        raise TrustRootError(
            f"no trust roots in {directory}",
            hint="install the publisher's root with motte key root trust DIR, or pass --key",
        )
    found: list[tuple[Path, RootMetadata]] = []
    for chain in chains:
        root = load_chain(chain, now=now)
        if namespace in root.namespaces:
            found.append((chain, root))
    if not found:
        raise TrustRootError(
            f"namespace {namespace!r}: no trust root in {directory} delegates it",
            hint="ask the namespace's root key holders for a delegation (motte key root delegate)",
        )
    if len(found) > 1:
        names = " and ".join(str(c) for c, _ in found)
        raise TrustRootError(f"namespace {namespace!r} is delegated by more than one root: {names}")
    chain, root = found[0]
    keys, threshold = root.namespace_keys(namespace) or ([], 1)
    return PublisherPolicy(
        tuple(keys),
        threshold,
        f"trust root {chain.name} version {root.version}",
        chain,
        tuple(root.namespace_identities(namespace)),
    )


# -- installing --------------------------------------------------------------------------


def install_root(
    source: Path, name: str | None = None, *, now: dt.datetime, into: Path | None = None
) -> tuple[Path, RootMetadata, list[int]]:
    """Install ``source``'s chain as root ``name`` (default: the directory's name).

    New: the whole chain is verified and copied; its first version becomes this
    installation's anchor. Installed already: only the versions after the installed latest
    are taken, and only if they chain from it. Returns (dir, latest root, versions added).
    """
    name = name or source.resolve().name
    if not _ROOT_NAME_RE.fullmatch(name):
        raise SigningUsageError(f"root name {name!r}: use letters, digits, . _ - (at most 64)")
    files = chain_files(source)
    if not files:
        raise TrustRootError(f"{source}: no N.root.json files")
    target = (into or trust_roots_dir()) / name
    installed = chain_files(target)
    if installed:
        have = _version(installed[-1])
        newer = [p for p in files if _version(p) > have]
        docs = [(str(installed[-1]), installed[-1].read_bytes())]
        docs += [(str(p), p.read_bytes()) for p in newer]
        latest = verify_chain(docs, now=now)
        if any(
            _version(p) <= have and p.read_bytes() != (target / p.name).read_bytes()
            for p in files
            if (target / p.name).exists()
        ):
            raise TrustRootError(
                f"{source}: a version differs from the one installed in {target}",
                hint="two different documents with one version number: ask the root key holders",
            )
    else:
        newer = files
        latest = verify_chain([(str(p), p.read_bytes()) for p in files], now=now)
    target.mkdir(parents=True, exist_ok=True)
    for p in newer:
        atomic_write_bytes(target / p.name, p.read_bytes())
    return target, latest, [_version(p) for p in newer]


def _version(path: Path) -> int:
    return int(path.name.split(".", 1)[0])


# -- publishing (the root key holders' side) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class RootStatus:
    version: int
    path: Path
    complete: bool
    missing: tuple[str, ...]
    root: RootMetadata


def current_root(directory: Path, *, now: dt.datetime) -> RootMetadata | None:
    """The latest complete version in a publisher's root directory (expired or not)."""
    if not chain_files(directory):
        return None
    return load_chain(directory, now=now, check_expiry=False)


def propose(
    directory: Path, proposed: RootMetadata, keys: Sequence[PrivateKey], *, now: dt.datetime
) -> RootStatus:
    """Sign ``proposed`` (the next version) with ``keys``; publish it once complete."""
    staged = directory / STAGED_FILE
    if staged.exists():
        raise SigningUsageError(
            f"{staged}: version waits for signatures already",
            hint="sign it with motte key root sign, or delete the file to abandon it",
        )
    current = current_root(directory, now=now)
    expected = 1 if current is None else current.version + 1
    if proposed.version != expected:
        raise SigningUsageError(f"{directory}: next version is {expected}, not {proposed.version}")
    return _sign_and_store(directory, RootDocument(proposed), current, keys)


def sign_staged(directory: Path, keys: Sequence[PrivateKey], *, now: dt.datetime) -> RootStatus:
    staged = directory / STAGED_FILE
    if not staged.exists():
        raise SigningUsageError(f"{directory}: no version waits for signatures ({STAGED_FILE})")
    doc = RootDocument.from_bytes(staged.read_bytes(), str(staged))
    current = current_root(directory, now=now)
    expected = 1 if current is None else current.version + 1
    if doc.signed.version != expected:
        raise TrustRootError(f"{staged}: version {doc.signed.version}, expected {expected}")
    return _sign_and_store(directory, doc, current, keys)


def _sign_and_store(
    directory: Path, doc: RootDocument, previous: RootMetadata | None, keys: Sequence[PrivateKey]
) -> RootStatus:
    allowed = {k.keyid for k in doc.signed.root_keys()}
    if previous is not None:
        allowed |= {k.keyid for k in previous.root_keys()}
    for key in keys:
        if key.keyid not in allowed:
            raise SigningUsageError(
                f"key {key.keyid[:16]} is not a root key of version {doc.signed.version}"
                + (f" or {previous.version}" if previous else ""),
                hint="root versions are signed by root keys (motte key root show DIR)",
            )
        doc = doc.sign(key)
    missing = doc.missing_signatures(previous)
    directory.mkdir(parents=True, exist_ok=True)
    staged = directory / STAGED_FILE
    if missing:
        atomic_write_bytes(staged, doc.to_bytes())
        path = staged
    else:
        path = directory / f"{doc.signed.version}.root.json"
        atomic_write_bytes(path, doc.to_bytes())
        staged.unlink(missing_ok=True)
    return RootStatus(doc.signed.version, path, not missing, tuple(missing), doc.signed)
