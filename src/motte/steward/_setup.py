"""``motte steward init``: a new Steward's CA, config, policy and database, all or nothing.

Everything is written into a temporary directory beside the target, then renamed into
place: a crash leaves either no Steward or a complete one, never a CA without its config.
An existing Steward is never overwritten (its CA is what clients pin).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from motte.errors import UsageError
from motte.fsutil import atomic_write_text, fsync_dir
from motte.steward._ca import StewardCa
from motte.steward._config import (
    DEFAULT_SAN_ALLOW,
    SanPattern,
    StewardConfig,
    StewardPaths,
    steward_dir,
)
from motte.steward._masterkey import KEY_FILE, create_key_file
from motte.steward._store import StewardStore
from motte.steward.errors import StewardConfigError
from motte.store import resolve_database

DEFAULT_POLICY = """\
# The Steward's attestation policy (motte.attest; reference: docs/attestation.md).
# Written by `motte steward init`: the built-in default policy, spelled out. It accepts
# SNP, TDX and SGX evidence that verifies to the vendors' roots from non-debug TEEs, and
# checks no measurement yet: name the measurements you expect before relying on it.
name = "steward-default"
allowed_kinds = ["snp", "tdx", "sgx"]
allow_debug = false
allow_insecure_sim = false
"""

INSECURE_SIM_POLICY = """\
# INSECURE DEVELOPMENT POLICY, written by `motte steward init --allow-insecure-sim`.
# It accepts evidence from the software keep (sim), which protects nothing: the host sees
# and changes everything, and anyone holding the sim key below can forge its evidence.
# Never let a Steward with this policy vouch for anything that matters.
name = "dev-insecure-sim"
allowed_kinds = ["snp", "tdx", "sgx"]
allow_debug = false
allow_insecure_sim = true

[sim]
# This installation's sim keep key (MOTTE_HOME/keys/sim-keep.pem): only its Keeps.
keys = ["{key}"]
"""


def init_steward(
    *,
    root: Path | None = None,
    san_allow: Sequence[str] = DEFAULT_SAN_ALLOW,
    policy: Path | None = None,
    allow_insecure_sim: bool = False,
    database: str | None = None,
    now: datetime | None = None,
) -> StewardPaths:
    """Create a Steward under ``root`` (default ``motte_home()/steward``).

    Its database is ``steward.db`` inside, unless ``database`` (or MOTTE_DB) names a
    PostgreSQL database: then that is recorded in config.toml, and refused if it already
    belongs to a Steward (a second CA for one database would split its audit log between
    two authorities; a replica copies the first Steward's directory instead).
    """
    from motte.attest import load_policy, parse_policy

    target = Path(root) if root is not None else steward_dir()
    if policy is not None and allow_insecure_sim:
        raise UsageError(
            "--policy and --allow-insecure-sim: choose one",
            hint="to accept sim evidence with your own policy, set allow_insecure_sim = true in it",
        )
    if target.exists() and any(target.iterdir()):
        raise StewardConfigError(
            f"{target}: a Steward already exists here (its CA is what clients pin)",
            hint=f"to start over, remove {target} (every certificate it issued stops verifying)",
        )
    try:
        patterns = tuple(SanPattern.parse(s) for s in san_allow)
    except ValueError as e:
        raise UsageError(f"--san-allow {e}") from None
    if not patterns:
        raise UsageError("--san-allow: at least one name")
    if policy is not None:
        load_policy(policy)  # refuse a malformed policy now, naming its line
        policy_text = policy.read_text("utf-8")
    elif allow_insecure_sim:
        from cryptography.hazmat.primitives import serialization

        from motte.attest.sim import load_or_create_sim_key

        key = load_or_create_sim_key().public_key()
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        policy_text = INSECURE_SIM_POLICY.replace("{key}", raw.hex())
    else:
        policy_text = DEFAULT_POLICY
    parse_policy(policy_text, source="policy.toml")
    url = resolve_database(database, default=target / "steward.db")
    config = StewardConfig(san_allow=patterns, database=url.conninfo if url.is_postgresql else None)
    now = now or datetime.now(UTC)
    ca = StewardCa.create(patterns, now=now)
    shared = StewardStore(url) if url.is_postgresql else None
    try:
        if shared is not None:
            _refuse_a_second_ca(shared, target)
        return _create(target, ca, config, policy_text, shared, now)
    finally:
        if shared is not None:
            shared.close()


def _refuse_a_second_ca(store: StewardStore, target: Path) -> None:
    existing = store.ca()
    if existing is not None:
        raise StewardConfigError(
            f"{store.where} already belongs to a Steward (CA sha256 {existing[0][:16]}...): "
            "init would make a second CA for it",
            hint=f"to add a replica, copy that Steward's directory (ca-key.pem with mode 0600, "
            f"ca.pem, config.toml, policy.toml) to {target}; see docs/scale.md",
        )


def _create(
    target: Path,
    ca: StewardCa,
    config: StewardConfig,
    policy_text: str,
    shared: StewardStore | None,
    now: datetime,
) -> StewardPaths:
    """Write the Steward into a staging directory, claim its database, rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(staging, 0o700)
        paths = StewardPaths(staging)
        ca.save(paths)
        atomic_write_text(paths.policy, policy_text, mode=0o644)
        atomic_write_text(paths.config, config.to_toml(), mode=0o644)
        # The secret store's master key (docs/secrets.md): replicas copy it like the CA key.
        create_key_file(paths.root / KEY_FILE)
        store = shared or StewardStore(paths.database)
        try:
            claimed = store.claim_ca(ca.fingerprint, ca.cert_pem.decode(), now=now)
        finally:
            if shared is None:
                store.close()
        if claimed != ca.fingerprint:  # another init won the race for this database
            assert shared is not None
            _refuse_a_second_ca(shared, target)
        if target.exists():
            target.rmdir()  # empty (checked above); rename cannot replace a directory
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(target.parent)
    return StewardPaths(target)
