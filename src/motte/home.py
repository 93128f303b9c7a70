"""Where motte keeps its state: ``MOTTE_HOME``, else the user's data directory.

Layout under the home (each area owns its subdirectory and creates it on first use):

    cache/compiled/   compiled wasm artifacts (motte.keep)
    cache/collateral/ attestation collateral: VCEKs, chains, CRLs, TCB info (motte.attest)
    keys/             the installation's own keys (cache HMAC key, sim keep key)
    steward/          Steward CA key, config and audit log
    oci/              the default OCI image-layout store
    tlog/             transparency log state and the last checkpoint seen per log
    power/            coordinator progress
"""

from __future__ import annotations

import os
from pathlib import Path


def motte_home() -> Path:
    """The state directory; not created here, callers create the part they write."""
    env = os.environ.get("MOTTE_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "motte"


def home_dir(*parts: str, private: bool = False) -> Path:
    """``motte_home()/parts...``, created if missing; ``private`` makes it owner-only (0700)."""
    path = motte_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o755)
    if private:
        os.chmod(path, 0o700)
    return path
