"""A small real world for the console to show, started on 127.0.0.1 and stopped afterwards.

- a Steward (``motte steward serve``) that accepted a sim Keep twice (a renewal) and refused
  requests, one of them carrying markup in its Content-Type header and one asking for a name
  made of markup; it holds a secret (``db-password``, put with ``motte secret put``) that it
  released to the sim Keep once and refused to another workload once;
- the embedded transparency log holding a signed, published and reviewed package
  (``acme/hello:1.0``), a statement whose package name is markup, and a raw entry of markup;
- a trust root delegating ``acme`` to the signer, so the Trust page has a real verdict;
- a UPS simulator (``motte power simulate``) whose variables include markup, and a real
  ``motte power watch`` that rode a cut into a shutdown, so the event log holds readings and a
  shutdown to replay; the simulator keeps running for the live view;
- ``motte console`` on 127.0.0.1, and, when this machine has an address that is not
  loopback, a second one bound there with a token file.

Used by tests/integration/test_console_browser.py and scripts/console-screenshots.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MOTTE = [sys.executable, "-m", "motte"]
HOSTILE_SCRIPT = '<script>alert("motte")</script>'
HOSTILE_IMG = '"><img src=x onerror=alert(1)>'
TOKEN = "console-test-token-" + "x" * 24
#: The world's secret value: no page may show it.
SECRET_VALUE = "console-world-secret-" + "y" * 16


@dataclass
class World:
    home: Path
    console: str  # http://127.0.0.1:PORT
    far: str | None  # the console bound to a non-loopback address, if this machine has one
    token: str
    digest: str
    plan: str  # the plan's name
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (None when there is none)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a source address
        addr = s.getsockname()[0]
        if not addr.startswith("127."):
            with socket.socket() as probe:
                probe.bind((addr, 0))  # it must be bindable here
            return addr
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout
    except OSError:
        return None
    for addr in out.split():
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", addr) and not addr.startswith("127."):
            return addr
    return None


@contextlib.contextmanager
def home_of(env: dict[str, str]) -> Iterator[None]:
    """This process's MOTTE_HOME set to the world's for a while, then put back."""
    before = os.environ.get("MOTTE_HOME")
    os.environ["MOTTE_HOME"] = env["MOTTE_HOME"]
    try:
        yield
    finally:
        if before is None:
            del os.environ["MOTTE_HOME"]
        else:
            os.environ["MOTTE_HOME"] = before


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args: str, env: dict[str, str]) -> str:
    r = subprocess.run([*MOTTE, *args], capture_output=True, text=True, env=env, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"motte {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(
        [*MOTTE, *args],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate, what: str, timeout: float, *procs: subprocess.Popen[bytes]):
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: {p.args} exited with {p.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def served_at(log: Path, proc: subprocess.Popen[bytes], what: str) -> str:
    def found() -> str | None:
        m = re.search(r"serving on (https?://\S+?)/?(?:\s|$)", log.read_text(errors="replace"))
        return m.group(1) if m else None

    return wait_for(found, what, 30, proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _steward(env: dict[str, str], tmp: Path, world: World, digest: str) -> None:
    import httpx

    from motte.steward import StewardClient
    from tests.steward.helpers import keep_csr

    run("steward", "init", "--allow-insecure-sim", env=env)
    log = tmp / "steward.log"
    proc = start(["steward", "serve", "--listen", "127.0.0.1:0"], env, log)
    world.procs.append(proc)
    url = served_at(log, proc, "the Steward")
    with home_of(env), StewardClient(url) as client:  # the sim Keep's key is in that home
        for _ in range(2):  # a certificate, then its renewal
            client.attest(keep_csr(client.nonce(), digest=digest))
        for sans in (("evil.example",), (HOSTILE_IMG,)):
            with contextlib.suppress(Exception):  # refused: the refusal is what we want
                client.attest(keep_csr(client.nonce(), digest=digest, sans=sans))
    r = httpx.post(f"{url}/attest", content=b"x", headers={"Content-Type": HOSTILE_SCRIPT})
    assert r.status_code == 415, r.text
    _secret(env, tmp, url, digest)


def _secret(env: dict[str, str], tmp: Path, url: str, digest: str) -> None:
    """db-password, released to the sim Keep running ``digest`` and refused to another."""
    from motte.keep._release import release_secrets
    from motte.keep.backends import SimBackend
    from motte.steward import SecretRefusedError, Wanted

    policy = tmp / "release.toml"
    policy.write_text(f'digests = ["{digest}"]\nallow_insecure_sim = true\n')
    put = subprocess.run(
        [*MOTTE, "secret", "put", "db-password", "--policy", str(policy)],
        input=SECRET_VALUE,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if put.returncode != 0:
        raise RuntimeError(f"motte secret put: {put.stderr.strip()}")
    sim = SimBackend(allow_insecure_sim=True)
    with home_of(env):
        got = release_secrets(url, digest, sim, [Wanted("db-password")])
        assert got["db-password"].value == SECRET_VALUE.encode()
        other = "sha256:" + "0" * 64
        with contextlib.suppress(SecretRefusedError):
            release_secrets(url, other, sim, [Wanted("db-password")])


def _log_and_trust(env: dict[str, str], tmp: Path) -> str:
    from motte.sign import (
        INTOTO_PAYLOAD_TYPE,
        PUBLICATION,
        Statement,
        Subject,
        generate_key,
        sign_envelope,
    )
    from motte.tlog import open_log

    run("key", "new", "acme-root", env=env)
    run("key", "new", "alice", env=env)
    root = tmp / "acme-root"
    run("key", "root", "init", str(root), "--root-key", "acme-root", "--key", "acme-root", env=env)
    run("key", "root", "delegate", str(root), "acme", "--signer", "alice", "--key", "acme-root",
        env=env)  # fmt: skip
    run("key", "root", "trust", str(root), env=env)
    package = ROOT / "examples" / "http-hello"
    out = run("package", str(package), "-t", "acme/hello:1.0", "--json", env=env)
    digest = json.loads(out)["digest"]
    run("sign", "acme/hello:1.0", "--key", "alice", env=env)
    run("attest-review", "acme/hello:1.0", "--key", "alice", "--reviewer",
        "mailto:auditor@example.org", "--scope", "full", "--result", "pass", env=env)  # fmt: skip
    # Statements nobody trusts, whose words are markup: they must show as text.
    statement = Statement(
        (Subject.for_digest(HOSTILE_SCRIPT, digest),),
        PUBLICATION,
        {"namespace": HOSTILE_SCRIPT, "name": HOSTILE_IMG},
    )
    envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, statement.to_bytes(), [generate_key()])
    log = open_log(directory=Path(env["MOTTE_HOME"]) / "tlog")
    try:
        log.append(envelope.to_bytes())
        log.append(f"{HOSTILE_IMG} {HOSTILE_SCRIPT}".encode())
    finally:
        log.close()
    return digest


def _power(env: dict[str, str], tmp: Path, world: World) -> None:
    from tests.power.rig import lab_plan, recorder

    port = free_port()
    rec, _ = recorder(tmp)
    scenario = tmp / "scenario.toml"
    scenario.write_text(
        f"""ups = "rack"
description = "rehearsal UPS"
[variables]
"ups.model" = {json.dumps(HOSTILE_SCRIPT)}
"device.mfr" = {json.dumps(HOSTILE_IMG)}
"ups.delay.shutdown" = 3
[[step]]
at = 0
status = "OL CHRG"
charge = 100
runtime = 1800
variables = {{ "ups.load" = 35 }}
[[step]]
at = 1
status = "OB DISCHRG"
[[step]]
at = 9
charge = 62
runtime = 700
variables = {{ "ups.load" = 41 }}
ramp = true
[[step]]
at = 9.5
status = "OB DISCHRG LB"
charge = 58
runtime = 640
[users.motte]
password = "pw"
upsmon = "primary"
actions = ["SET", "FSD"]
instcmds = ["ALL"]
"""
    )
    plan = lab_plan(tmp, port, rec, policy="ride_through = 30\nsecondaries_wait = 1")
    world.plan = "rig"
    sim = start(["power", "simulate", str(scenario), "--listen", f"127.0.0.1:{port}"], env,
                tmp / "sim.log")  # fmt: skip
    world.procs.append(sim)
    wait_for(lambda: listening(port), "the simulator", 30, sim)
    watch = start(["power", "watch", "--plan", str(plan)], env, tmp / "watch.log")
    events = Path(env["MOTTE_HOME"]) / "power" / "rig.events.jsonl"

    def down() -> bool:
        return events.exists() and '"kind": "down"' in events.read_text()

    try:
        wait_for(down, "the rehearsed shutdown", 90, watch, sim)
    finally:
        stop(watch)
    (tmp / "plan-path").write_text(str(plan))


@contextlib.contextmanager
def make_world(tmp: Path) -> Iterator[World]:
    """Build the world under ``tmp`` (its own MOTTE_HOME) and stop every process after."""
    home = tmp / "home"
    home.mkdir(parents=True)
    env = {**os.environ, "MOTTE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("MOTTE_DEBUG", None)
    world = World(home, "", None, TOKEN, "", "rig")
    try:
        digest = _log_and_trust(env, tmp)
        world.digest = digest
        _steward(env, tmp, world, digest)
        _power(env, tmp, world)
        plan = (tmp / "plan-path").read_text()
        policy = str(ROOT / "examples" / "trust" / "hobbyist.toml")
        common = ["--plan", plan, "--trust-policy", policy]
        log = tmp / "console.log"
        proc = start(["console", "--listen", "127.0.0.1:0", *common], env, log)
        world.procs.append(proc)
        world.console = served_at(log, proc, "the console")
        far = non_loopback_address()
        if far is not None:
            token_file = tmp / "token"
            token_file.write_text(TOKEN + "\n")
            token_file.chmod(0o600)
            far_log = tmp / "console-far.log"
            args = ["console", "--listen", f"{far}:0", "--allow-insecure-http"]
            proc = start([*args, "--token-file", str(token_file), *common], env, far_log)
            world.procs.append(proc)
            world.far = served_at(far_log, proc, "the console off loopback")
            assert TOKEN not in far_log.read_text()  # a token from a file is never printed
        yield world
    finally:
        for p in reversed(world.procs):
            stop(p)
