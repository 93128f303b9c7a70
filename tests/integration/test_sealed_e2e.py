"""Sealed state end to end with real processes on 127.0.0.1: a Steward (``motte steward
serve``), sim Keeps (``motte run acme/counter:... --grant volume:data``) serving
examples/counter, and, for the power cut, ``motte power``'s coordinator against its UPS
simulator draining the Keep with ``motte power drain-keeps``.

The counter counts requests in /data/count; each counting request asks for a flush, so its
answer acknowledges a write that must survive. It keeps counting across a restart, a
signed upgrade and a power cut; the host's copy never holds the canary note in clear; an
unsigned upgrade and another namespace's package are refused; and a Keep SIGKILLed at
each stage of a snapshot write, 20 times, always opens to the last complete snapshot.

Nothing waits on time: every step waits for a log line, a file, an event or a process.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_keep_attested_e2e import (
    Proc,
    free_port,
    motte,
    start,
    start_steward,
    wait_for,
)
from tests.power.rig import first, kinds, rehearse, scenario, write

pytestmark = pytest.mark.integration

CANARY = "motte-volume-canary:" + os.urandom(10).hex()
SIM = ("--backend", "sim", "--allow-insecure-sim")


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def request(port: int, path: str = "/", method: str = "GET", body: bytes | None = None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the chain is motte connect's business; here the answer
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def count(port: int, path: str = "/") -> int:
    status, text = request(port, path)
    assert status == 200, text
    return int(text)


@pytest.fixture
def world(tmp_path, motte_home):
    """A Steward home whose volume policy lets the sim keep in (development only), acme's
    publisher keys trusted, and examples/counter on a free port packaged and signed as
    acme/counter:1.0; (home, author dir, port)."""
    home = motte_home
    author = tmp_path / "author"
    shutil.copytree(REPO / "examples" / "counter", author)
    port = free_port()
    toml = author / "Motte.toml"
    text = re.sub(r"(?m)^port = \d+", f"port = {port}", toml.read_text())
    toml.write_text(re.sub(r"(?m)^snapshot_interval = \d+", "snapshot_interval = 0", text))
    ok(motte(home, "steward", "init", "--allow-insecure-sim"))
    (home / "steward" / "volumes.toml").write_text("allow_insecure_sim = true\n")
    for who in ("acme-root", "alice", "mallory-root", "mallory"):
        ok(motte(home, "key", "new", who))
    for ns, root, signer in (("acme", "acme-root", "alice"), ("evil", "mallory-root", "mallory")):
        d = tmp_path / root
        ok(motte(home, "key", "root", "init", str(d), "--root-key", root, "--key", root))
        ok(motte(home, "key", "root", "delegate", str(d), ns, "--signer", signer, "--key", root))
        ok(motte(home, "key", "root", "trust", str(d), "--name", ns))
    ok(motte(home, "package", str(author), "-t", "acme/counter:1.0"))
    ok(motte(home, "sign", "acme/counter:1.0", "--key", "alice"))
    return home, author, port


def keep(home: Path, url: str, ref: str = "acme/counter:1.0", *extra: str) -> Proc:
    argv = [sys.executable, "-m", "motte", "run", ref, "--grant", "volume:data",
            "--grant", "listen:web", "--steward", url, *SIM, *extra]  # fmt: skip
    proc, _ = start(argv, home, r"listening: web (https://\S+)")
    return proc


def drained(proc: Proc) -> str:
    """SIGTERM (a drain), wait for the exit; the line that says what was persisted."""
    proc.proc.send_signal(signal.SIGTERM)
    proc.proc.wait(60)
    wait_for(lambda: any("sealed volumes persisted" in line for line in proc.lines), 30)
    assert proc.proc.returncode == 0, proc.log
    return next(line for line in proc.lines if "sealed volumes persisted" in line)


def snapshot_files(home: Path) -> list[Path]:
    return [p for p in (home / "volumes").rglob("*") if p.is_file()]


def test_counting_goes_on_across_a_restart_and_a_signed_upgrade(world):
    home, author, port = world
    steward, url = start_steward(home)
    try:
        k = keep(home, url)
        assert [count(port) for _ in range(3)] == [1, 2, 3]
        assert request(port, "/note", "POST", CANARY.encode())[0] == 200
        assert count(port, "/?flush=0") == 4  # persisted by the drain below, not before
        line = drained(k)
        assert "acme/counter:data v5" in line, line  # 3 counts + the note + the drain
        # A restart: attest again, get the key, open version 5.
        k = keep(home, url)
        assert count(port) == 5
        assert request(port, "/note")[1] == CANARY
        drained(k)
        # A signed upgrade (new bytes, so a new digest) opens the same volume.
        (author / "Motte.toml").write_text(
            (author / "Motte.toml").read_text().replace("memory = 16", "memory = 17")
        )
        ok(motte(home, "package", str(author), "-t", "acme/counter:1.1"))
        ok(motte(home, "sign", "acme/counter:1.1", "--key", "alice"))
        k = keep(home, url, "acme/counter:1.1")
        assert count(port) == 6
        drained(k)
    finally:
        steward.stop()
    # The host's copy: ciphertext only, and the operator's view of it.
    files = snapshot_files(home)
    assert files and all(CANARY.encode() not in p.read_bytes() for p in files)
    # The check can fail: the same bytes in clear would be found.
    assert CANARY.encode() in CANARY.encode() + files[0].read_bytes()
    listing = ok(motte(home, "volume", "list"))
    assert "acme/counter:data  sealed to namespace  version 7" in listing, listing
    counters = ok(motte(home, "volume", "list", "--counters"))
    assert "acme/counter:data  sealed to namespace  version 7" in counters, counters


def test_an_unsigned_version_and_another_namespace_are_refused_and_nothing_changes(world):
    home, author, port = world
    steward, url = start_steward(home)
    try:
        k = keep(home, url)
        assert count(port) == 1
        drained(k)
        before = {p: p.read_bytes() for p in snapshot_files(home)}
        # Someone who can package but holds none of acme's keys.
        (author / "Motte.toml").write_text(
            (author / "Motte.toml").read_text().replace("memory = 16", "memory = 18")
        )
        ok(motte(home, "package", str(author), "-t", "acme/counter:6.6"))
        run = ["run", "--grant", "volume:data", "--grant", "listen:web", "--steward", url, *SIM]
        unsigned = motte(home, run[0], "acme/counter:6.6", *run[1:])
        assert unsigned.returncode == 125
        err = unsigned.stderr.strip().splitlines()
        refusal = next(line for line in err if line.startswith("motte: error:"))
        assert "refused this Keep its volume keys" in refusal
        assert "data: volume-identity: signed acme/counter: 0 of the 1 required" in refusal
        # Another namespace, signed by its own keys, pointed at acme's snapshots.
        ok(motte(home, "package", str(author), "-t", "evil/counter:1.0"))
        ok(motte(home, "sign", "evil/counter:1.0", "--key", "mallory"))
        acme_dir = home / "volumes" / "acme" / "counter" / "data"
        other = motte(
            home, "run", "evil/counter:1.0", "--grant", f"volume:data={acme_dir}",
            "--grant", "listen:web", "--steward", url, *SIM,
        )  # fmt: skip
        assert other.returncode == 125
        assert "a snapshot of volume acme/counter:data, not of evil/counter:data" in other.stderr
        # Without a grant a package gets no volume at all.
        ungranted = motte(
            home, "run", "acme/counter:1.0", "--grant", "listen:web", "--steward", url, *SIM
        )
        assert ungranted.returncode == 125
        assert "volume data: sealed state at /data (sealed to its namespace): --grant " in (
            ungranted.stderr
        )
        assert {p: p.read_bytes() for p in snapshot_files(home)} == before
        k = keep(home, url)  # and the rightful one still opens it
        assert count(port) == 2
        drained(k)
    finally:
        steward.stop()


def test_a_rollback_is_refused_until_the_operator_accepts_it(world):
    home, _author, port = world
    steward, url = start_steward(home)
    snap = home / "volumes" / "acme" / "counter" / "data" / "volume.sealed"
    try:
        k = keep(home, url)
        assert count(port) == 1
        drained(k)
        ok(motte(home, "volume", "export", "acme/counter:data", "--out", str(home / "v1.bak")))
        k = keep(home, url)
        assert count(port) == 2
        drained(k)
        refused_import = motte(home, "volume", "import", str(home / "v1.bak"))
        assert refused_import.returncode != 0 and "newer than" in refused_import.stderr
        ok(motte(home, "volume", "import", str(home / "v1.bak"), "--replace-newer"))
        run = ["run", "acme/counter:1.0", "--grant", "volume:data", "--grant", "listen:web"]
        run += ["--steward", url, *SIM]
        rolled = motte(home, *run)
        assert rolled.returncode == 125
        assert "snapshot version 1 is older than version 2" in rolled.stderr
        inspect = ok(motte(home, "volume", "inspect", str(snap), "--counter"))
        assert "REFUSED: older than version 2" in inspect
        ok(
            motte(
                home, "volume", "accept-rollback", "acme/counter:data", "--version", "1",
                "--reason", "restored on purpose",
            )
        )  # fmt: skip
        audit = ok(motte(home, "secret", "audit", "--json"))
        assert "version 2 -> 1 accepted: restored on purpose" in audit
        k = keep(home, url)
        assert count(port) == 2  # on from the restored version 1
        drained(k)
    finally:
        steward.stop()


def test_a_power_cut_driven_by_motte_power_drains_the_keep_and_it_resumes(world, tmp_path):
    """The plan's drain step is `motte power drain-keeps`; after the cut the coordinator
    starts the host again (its start command starts the Keep) and waits until
    `motte connect` verifies the Keep is attested and serving."""
    home, _author, port = world
    steward, url = start_steward(home)
    rec_log = tmp_path / "calls.log"
    starter = tmp_path / "start-keep.sh"
    starter.write_text(
        "#!/bin/sh\n"
        f'echo "$(date +%s.%N) $MOTTE_HOST start" >> {rec_log}\n'
        f"setsid {sys.executable} -m motte run acme/counter:1.0 --grant volume:data "
        "--grant listen:web "
        f"--steward {url} {' '.join(SIM)} >{tmp_path / 'keep-after.log'} 2>&1 </dev/null &\n"
    )
    starter.chmod(starter.stat().st_mode | stat.S_IXUSR)
    rec = tmp_path / "rec.sh"
    rec.write_text(f'#!/bin/sh\necho "$(date +%s.%N) $MOTTE_HOST $1" >> {rec_log}\n')
    rec.chmod(rec.stat().st_mode | stat.S_IXUSR)
    ups = free_port()
    (tmp_path / "nut.pw").write_text("pw\n")
    (tmp_path / "nut.pw").chmod(0o600)
    motte_cmd = f'"{sys.executable}", "-m", "motte"'
    plan = write(
        tmp_path,
        "plan.toml",
        f"""
        name = "sealed"
        [ups]
        address = "rack@127.0.0.1:{ups}"
        username = "motte"
        password_file = "nut.pw"
        tls = "off"
        [policy]
        poll_interval = 0.1
        ride_through = 30
        restart_charge = 50
        secondaries_wait = 1
        reserve = 0
        [hosts.pi]
        coordinator = true
        stop = ["{rec}", "poweroff"]
        stop_time = 5
        [hosts.app]
        drain = [{motte_cmd}, "power", "drain-keeps"]
        drain_time = 120
        stop = ["{rec}", "poweroff"]
        stop_time = 5
        start = ["{starter}"]
        start_time = 120
        ready = [{motte_cmd}, "connect", "tls://localhost:{port}", "--timeout", "2",
                 "--steward-ca", "{home / "steward" / "ca.pem"}",
                 "--expect-digest", "acme/counter:1.0", "--allow-insecure-sim"]
        """,
    )
    try:
        k = keep(home, url)
        assert [count(port) for _ in range(3)] == [1, 2, 3]  # acknowledged: flushed
        assert count(port, "/?flush=0") == 4  # not acknowledged; the drain persists it
        # The cut: on battery and low at once; the battery stays out until the plan is done.
        cut = scenario(
            tmp_path,
            '[[step]]\nat = 0\nstatus = "OL"\ncharge = 100\nruntime = 900\n'
            '[[step]]\nat = 0.3\nstatus = "OB DISCHRG LB"\ncharge = 20\nruntime = 120\n',
        )
        events = asyncio.run(rehearse(plan, cut, ups, lambda ev: "down" in kinds(ev), timeout=240))
        first(events, "host-down", "app")
        assert k.proc.poll() is not None, "the drain stopped the Keep"
        assert k.proc.returncode == 0, k.log
        persisted = next(line for line in k.lines if "sealed volumes persisted (drain)" in line)
        assert "acme/counter:data v4" in persisted, persisted
        # What the coordinator heard from the drain step: how long the Keep took.
        (drain,) = [e for e in events if e["kind"] == "step-done" and e["message"].startswith(
            "drain app")]  # fmt: skip
        assert drain["message"].startswith("drain app: ok"), drain
        assert "1 sealed volume snapshot(s)" in drain["message"], drain
        # Power returns: a new watch (the coordinator rebooted) sees mains, starts app, and
        # waits for its Keep to be attested and serving again.
        back = scenario(
            tmp_path, '[[step]]\nat = 0\nstatus = "OL CHRG"\ncharge = 100\nruntime = 900\n'
        )
        events = asyncio.run(
            rehearse(plan, back, ups, lambda ev: "recovered" in kinds(ev), timeout=240)
        )
        assert first(events, "host-up", "app")
        assert count(port) == 5  # on from the drained version: nothing acknowledged lost
    finally:
        ok(motte(home, "power", "drain-keeps", "--timeout", "60"))
        if k.proc.poll() is None:
            k.stop()
        steward.stop()


HOLD_STAGES = ("partial", "synced", "renamed")


def test_sigkill_during_snapshot_writes_always_opens_the_last_complete_snapshot(
    world, tmp_path, monkeypatch
):
    """20 times: a Keep stopped by SIGKILL at a stage of writing a 3 MiB snapshot (half its
    chunks written; the temporary file complete and fsynced; renamed into place but not yet
    committed). The next Keep opens the last snapshot that was renamed into place: the old
    one for the first two stages, the new one for the third."""
    home, _author, port = world
    steward, url = start_steward(home)
    hold = tmp_path / "hold"
    expected = 0
    try:
        k = keep(home, url)
        status, _ = request(port, "/note", "POST", os.urandom(3 * 1024 * 1024))
        assert status == 200
        drained(k)
        for i in range(20):
            stage = HOLD_STAGES[i % 3]
            monkeypatch.setenv("MOTTE_TEST_SNAPSHOT_HOLD", f"{hold}{i}@{stage}")
            k = keep(home, url)
            monkeypatch.delenv("MOTTE_TEST_SNAPSHOT_HOLD")
            assert count(port, "/count") == expected, (i, stage, k.log)
            answer: list[object] = []
            t = threading.Thread(target=lambda a=answer: a.append(_try(port)), daemon=True)
            t.start()
            marker = Path(f"{hold}{i}.{stage}")
            wait_for(marker.exists, 60)
            k.proc.send_signal(signal.SIGKILL)
            k.proc.wait(30)
            t.join(60)
            assert answer and not isinstance(answer[0], int), "never acknowledged"
            if stage == "renamed":
                expected += 1
        k = keep(home, url)
        assert count(port, "/count") == expected
        assert count(port) == expected + 1
        drained(k)
    finally:
        steward.stop()
    leftovers = [p.name for p in (home / "volumes").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []  # the interrupted writes' temporary files were removed
    mine = [p for p in Path("/dev/shm").glob("motte-volume-*") if not _alive(p)]
    assert mine == []  # killed Keeps' memory was zeroed and removed by the next one


def _try(port: int) -> object:
    try:
        return count(port)
    except (OSError, http.client.HTTPException) as e:
        return e


def _alive(p: Path) -> bool:
    pid = p.name.split("-")[2]
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    return True
