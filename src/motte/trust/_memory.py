"""The consumer's own memory of each package: which signers it accepted, and since when.

``motte_home()/trust/seen/<sha256 of namespace/name>.json``::

    {"package": "acme/hello",
     "signers": {"<keyid>": "2026-11-26T19:38:55Z"},          first accepted version signed
     "versions": {"sha256:...": {"accepted": "2026-...", "layers": {"Motte.toml": "sha256:..."},
                                 "signers": ["<keyid>"]}}}

Only an *accepted* verdict is remembered: a signer the policy flagged and refused must not
become "seen before" by running the judgement twice. Nothing here comes from the publisher,
so nothing here can be backdated by one. Writes are atomic, under a lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motte.fsutil import atomic_write_bytes, locked_directory
from motte.home import motte_home

#: Versions remembered per package (the oldest are dropped first).
MAX_VERSIONS = 256


def memory_dir() -> Path:
    return motte_home() / "trust" / "seen"


def _file(package: str) -> Path:
    return memory_dir() / (hashlib.sha256(package.encode()).hexdigest()[:32] + ".json")


@dataclass
class PackageMemory:
    package: str
    signers: dict[str, str] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        doc = {"package": self.package, "signers": self.signers, "versions": self.versions}
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"


def load_memory(package: str) -> PackageMemory:
    """What this installation accepted of ``package`` before (empty when nothing, or damaged)."""
    path = _file(package)
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return PackageMemory(package)
    except (OSError, ValueError):
        # A damaged memory file forgets, it never vouches: every signer reads as new.
        return PackageMemory(package)
    if not isinstance(doc, dict) or doc.get("package") != package:
        return PackageMemory(package)
    signers = doc.get("signers") if isinstance(doc.get("signers"), dict) else {}
    versions = doc.get("versions") if isinstance(doc.get("versions"), dict) else {}
    return PackageMemory(
        package,
        {k: v for k, v in signers.items() if isinstance(k, str) and isinstance(v, str)},
        {k: v for k, v in versions.items() if isinstance(k, str) and isinstance(v, dict)},
    )


def remember_accepted(
    package: str,
    digest: str,
    *,
    layers: dict[str, str],
    signers: Iterable[str],
    now: dt.datetime,
) -> None:
    """Record that ``digest`` of ``package``, signed by ``signers``, was accepted at ``now``."""
    when = now.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    with locked_directory(memory_dir()):
        mem = load_memory(package)
        signer_list = sorted(set(signers))
        for keyid in signer_list:
            mem.signers.setdefault(keyid, when)
        entry = mem.versions.get(digest) or {"accepted": when}
        entry.update({"layers": dict(layers), "signers": signer_list})
        mem.versions[digest] = entry
        if len(mem.versions) > MAX_VERSIONS:
            oldest = sorted(mem.versions, key=lambda d: mem.versions[d].get("accepted", ""))
            for d in oldest[: len(mem.versions) - MAX_VERSIONS]:
                del mem.versions[d]
        atomic_write_bytes(_file(package), mem.to_bytes())
