"""Secrets and an encrypted workload, end to end with real processes on 127.0.0.1: a Steward
(``motte steward serve``), a real OCI registry (Debian's docker-registry), and a sim Keep
(``motte run REGISTRY/acme/db:1.0 --steward ...``) serving examples/secret-db over TLS.

The canary check: a random secret and the module's marker (plus windows of its code) are
looked for, in clear, in every file under MOTTE_HOME, the registry's storage, the test's
temporary directory (the subprocesses' TMPDIR too), both processes' logs and the process
list, while the Keep serves and after it stopped. The module's source directory (the
author's own plaintext) is the one place left out.

Refusals at the process level (each also shown, with every rule, in tests/steward):
an unsigned upgrade of the package, and a secret removed (revoked) before the Keep starts.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_keep_attested_e2e import free_port, start
from tests.oci.registry_server import run_registry

pytestmark = pytest.mark.integration

MARKER = b"motte-module-canary:7d0c59e2b1a84f36c1e5"


def motte(home: Path, tmp: Path, *args: object, stdin: bytes | None = None, timeout: float = 60):
    env = dict(os.environ, MOTTE_HOME=str(home), TMPDIR=str(tmp))
    return subprocess.run(
        [sys.executable, "-m", "motte", *map(str, args)],
        env=env,
        input=stdin,
        capture_output=True,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def request(port: int, method: str, path: str, body: bytes | None = None) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # motte connect checks the chain; here, only the answer
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    try:
        conn.request(method, path, body=body)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


@pytest.fixture
def world(tmp_path, motte_home):
    """A Steward with the canary secret, acme's publisher keys, secret-db packaged
    --encrypt, signed and pushed to a real registry; (home, tmp, registry, author, canary)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    author = tmp_path.parent / f"{tmp_path.name}-author"  # outside every scanned place
    shutil.copytree(REPO / "examples" / "secret-db", author / "secret-db")
    port = free_port()
    toml = author / "secret-db" / "Motte.toml"
    toml.write_text(re.sub(r"(?m)^port = \d+", f"port = {port}", toml.read_text()))
    home = motte_home
    canary = b"canary-secret-" + os.urandom(12).hex().encode()
    ok(motte(home, tmp, "steward", "init", "--allow-insecure-sim"))
    for args in (
        ("key", "new", "acme-root"),
        ("key", "new", "alice"),
        ("key", "root", "init", tmp / "acme-root", "--root-key", "acme-root", "--key", "acme-root"),
        ("key", "root", "delegate", tmp / "acme-root", "acme", "--signer", "alice", "--key",
         "acme-root"),
        ("key", "root", "trust", tmp / "acme-root", "--name", "acme"),
    ):  # fmt: skip
        ok(motte(home, tmp, *args))
    policy = author / "secret-db" / "release.toml"
    ok(motte(home, tmp, "secret", "put", "db-password", "--policy", policy, stdin=canary))
    with run_registry(tmp) as registry:
        ok(
            motte(
                home, tmp, "package", author / "secret-db", "-t", "acme/db:1.0", "--encrypt",
                "--release-policy", policy,
            )
        )  # fmt: skip
        ok(motte(home, tmp, "sign", "acme/db:1.0", "--key", "alice"))
        ok(motte(home, tmp, "push", f"{registry.url}/acme/db:1.0"))
        yield home, tmp, registry, author, canary, port
    shutil.rmtree(author, ignore_errors=True)


def start_steward(home: Path, tmp: Path):
    argv = [sys.executable, "-m", "motte", "steward", "serve", "--listen", "127.0.0.1:0"]
    os.environ["TMPDIR"] = str(tmp)
    return start(argv, home, r"serving on (http://\S+)")


def clear_needles(author: Path, canary: bytes) -> dict[str, bytes]:
    module = (author / "secret-db" / "secret-db.wasm").read_bytes()
    code = module.index(b"\x0a", 8)  # somewhere past the header; windows of real bytes
    windows = {f"module bytes @{i}": module[i : i + 48] for i in (code + 200, len(module) // 2)}
    return {"secret": canary, "module marker": MARKER, **windows}


def scan(places: list[Path], texts: dict[str, str], needles: dict[str, bytes]) -> list[str]:
    found = []
    for place in places:
        for path in [place] if place.is_file() else place.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            found += [f"{what} in {path}" for what, n in needles.items() if n in data]
    for where, text in texts.items():
        data = text.encode(errors="replace")
        found += [f"{what} in {where}" for what, n in needles.items() if n in data]
    return found


def test_an_encrypted_workload_gets_its_password_and_nothing_leaks(world, monkeypatch):
    home, tmp, registry, author, canary, port = world
    monkeypatch.setenv("TMPDIR", str(tmp))
    steward, url = start_steward(home, tmp)
    keep = None
    try:
        keep, _ = start(
            [
                sys.executable, "-m", "motte", "run", f"{registry.url}/acme/db:1.0",
                "--steward", url, "--backend", "sim", "--allow-insecure-sim",
                "--grant", "listen:web", "--grant", "secret:db-password",
            ],
            home,
            r"listening: web (https://\S+)",
        )  # fmt: skip
        status = request(port, "GET", "/")
        assert f"password from /run/secrets/db-password ({len(canary)} bytes)" in status
        assert "DB_PASSWORD: the same value" in status
        assert request(port, "POST", "/check", canary) == "match\n"
        assert request(port, "POST", "/check", b"guess") == "no match\n"
        ps = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
        shm = [p for p in Path("/dev/shm").glob("motte-secrets-*") if p.stat().st_uid == _me()]
        served = [d for d in shm if any(d.rglob("db-password"))]
        assert served, "the secret file is on the tmpfs while the Keep serves"
    finally:
        if keep is not None:
            keep.proc.send_signal(signal.SIGTERM)
            keep.stop()
        steward.stop()
    assert keep.proc.returncode == 0, keep.log
    assert not any(d.exists() for d in served), "removed when the Keep stopped"
    assert any("released to" in line for line in steward.lines), steward.log
    needles = clear_needles(author, canary)
    cache = list((home / "cache" / "compiled").glob("*.cwasm"))
    assert cache and all(p.read_bytes().startswith(b"motte-cwasm-sealed-v1\n") for p in cache)
    leaks = scan(
        [home, registry.storage, tmp],
        {"the Steward's log": steward.log, "the Keep's log": keep.log, "the process list": ps},
        needles,
    )
    assert leaks == []
    # The check can fail: the same scan finds the author's own plaintext.
    assert scan([author], {}, needles) != []


def _me() -> int:
    return os.getuid()


def test_an_unsigned_upgrade_and_a_removed_secret_are_refused(world, monkeypatch):
    home, tmp, _registry, author, canary, _port = world
    monkeypatch.setenv("TMPDIR", str(tmp))
    policy = author / "secret-db" / "release.toml"
    # Someone with push access builds 1.1 (the same Steward key secret, a new version) but
    # cannot sign it as acme: no key of acme's root.
    ok(
        motte(
            home, tmp, "package", author / "secret-db", "-t", "acme/db:1.1", "--encrypt",
            "--release-policy", policy,
        )
    )  # fmt: skip
    steward, url = start_steward(home, tmp)
    try:
        run = ("run", "--steward", url, "--backend", "sim", "--allow-insecure-sim")
        run += ("--grant", "listen:web", "--grant", "secret:db-password")
        unsigned = motte(home, tmp, *run[:1], "acme/db:1.1", *run[1:])
        assert unsigned.returncode == 125
        err = unsigned.stderr.decode()
        assert "refused to release secrets to this Keep" in err
        assert "db-password: workload: signed acme/db: 0 of the 1 required publisher" in err
        assert "content-key/acme/db: workload: signed acme/db: 0 of the 1" in err
        ok(motte(home, tmp, "secret", "rm", "db-password"))
        removed = motte(home, tmp, *run[:1], "acme/db:1.0", *run[1:])
        assert removed.returncode == 125
        assert "db-password: secret: removed at" in removed.stderr.decode()
    finally:
        steward.stop()
    audit = ok(motte(home, tmp, "secret", "audit"))
    assert audit.count("REFUSED") == 2
    assert canary.decode() not in audit + steward.log
