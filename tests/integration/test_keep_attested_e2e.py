"""The whole path with real processes on 127.0.0.1: ``motte steward serve``, a Keep
(``motte run --steward ...`` serving an HTTP workload) and ``motte connect``.

Every refusal the issue names is shown with its reason where the operator looks (the
Steward's log and audit) and where the refused party looks (the Keep's error, the client's
exit status and message):

=======================  ==========================================  =======================
case                     how                                          refused by
=======================  ==========================================  =======================
wrong digest             the client expects another workload          motte connect
wrong digest             evidence bound to another digest            the Steward
replayed nonce           the same CSR and nonce twice                 the Steward
expired nonce            a nonce used after nonce_lifetime            the Steward
tampered evidence        sim evidence with a flipped byte             the Steward
sim, no allow flag       Keep without --allow-insecure-sim            the Keep itself
sim, no allow flag       Steward policy without allow_insecure_sim    the Steward
sim, no allow flag       client without --allow-insecure-sim          motte connect
debug evidence           SNP report with POLICY.DEBUG, configfs-tsm   the Steward
=======================  ==========================================  =======================

The debug case needs SNP evidence a test can sign: the Steward process is started through a
tiny wrapper that hands it a fake AMD root (Python API only; no flag or variable of motte's
can do that), and the Keep side is the library over a fake configfs-tsm tree.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from motte.attest import Evidence
from motte.steward import AttestationRefusedError, StewardClient
from tests.keep.conftest import EXAMPLES
from tests.steward.helpers import DIGEST, OTHER_DIGEST, flip, keep_csr

pytestmark = pytest.mark.integration


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


def env_for(home: Path) -> dict[str, str]:
    return dict(os.environ, MOTTE_HOME=str(home))


def motte(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "motte", *map(str, args)],
        env=env_for(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(argv: list[str], home: Path, ready: str, *, timeout: float = 60) -> tuple[Proc, str]:
    """Start a process, wait for a stderr line matching ``ready``; (process, match group 1)."""
    proc = Proc(
        subprocess.Popen(argv, env=env_for(home), stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    )
    assert proc.proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        if not sel.select(timeout=0.2):
            if proc.proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.proc.stderr.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.split(b"\n")
        for raw in done:
            line = raw.decode(errors="replace")
            proc.lines.append(line)
            if m := re.search(ready, line):
                threading.Thread(target=_drain, args=(proc,), daemon=True).start()
                return proc, m.group(1)
    proc.proc.wait(5) if proc.proc.poll() is not None else proc.stop()
    rest = proc.proc.stderr.read().decode(errors="replace") if proc.proc.stderr else ""
    proc.lines.extend(rest.splitlines())
    raise StartFailed(proc)


class StartFailed(Exception):
    def __init__(self, proc: Proc) -> None:
        super().__init__(proc.log)
        self.proc = proc


def _drain(proc: Proc) -> None:
    assert proc.proc.stderr is not None
    for raw in proc.proc.stderr:
        proc.lines.append(raw.decode(errors="replace").rstrip("\n"))


def start_steward(home: Path, *, argv: list[str] | None = None) -> tuple[Proc, str]:
    cmd = argv or [sys.executable, "-m", "motte", "steward", "serve", "--listen", "127.0.0.1:0"]
    return start(cmd, home, r"serving on (http://\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_hello(tmp_path: Path) -> tuple[Path, int]:
    """examples/http-hello, listening on a free port."""
    d = tmp_path / "http-hello"
    shutil.copytree(EXAMPLES / "http-hello", d)
    port = free_port()
    text = (d / "Motte.toml").read_text()
    (d / "Motte.toml").write_text(re.sub(r"(?m)^port = \d+", f"port = {port}", text))
    return d, port


def config_set(home: Path, key: str, value: str) -> None:
    path = home / "steward" / "config.toml"
    path.write_text(re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", path.read_text()))


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def home(motte_home):
    """The processes' MOTTE_HOME is this test's own: in-process Keeps sign sim evidence with
    the same installation key the Steward's dev policy pins."""
    return motte_home


@pytest.fixture
def dev_steward(home):
    """``motte steward init --allow-insecure-sim`` and ``serve``, as the demo does."""
    assert motte(home, "steward", "init", "--allow-insecure-sim").returncode == 0
    proc, url = start_steward(home)
    yield proc, url
    proc.stop()


def test_keep_served_over_attested_tls_and_checked_by_the_client(tmp_path, home, dev_steward):
    steward, url = dev_steward
    directory, port = http_hello(tmp_path)
    packaged = motte(home, "package", directory, "--tag", "demo/http-hello:1.0", "--json")
    assert packaged.returncode == 0, packaged.stderr
    digest = json.loads(packaged.stdout)["digest"]
    keep, _ = start(
        [
            sys.executable,
            "-m",
            "motte",
            "run",
            "demo/http-hello:1.0",
            "--steward",
            url,
            "--backend",
            "sim",
            "--allow-insecure-sim",
            "--grant",
            "listen:web",
        ],
        home,
        r"listening: web (https://\S+)",
    )
    try:
        assert any("attested by" in line and "INSECURE" in line for line in keep.lines)
        ca = home / "steward" / "ca.pem"
        base = ["connect", f"https://127.0.0.1:{port}/", "--steward-ca", ca]
        ok = motte(home, *base, "--expect-digest", digest, "--allow-insecure-sim")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith("Hello")
        assert f"workload     {digest} (as expected)" in ok.stderr
        wrong = motte(home, *base, "--expect-digest", OTHER_DIGEST, "--allow-insecure-sim")
        assert wrong.returncode == 1
        assert f"the Keep runs {digest}, not the expected {OTHER_DIGEST}" in wrong.stderr
        no_flag = motte(home, *base, "--expect-digest", digest)
        assert no_flag.returncode == 1 and "sim keep: INSECURE" in no_flag.stderr
    finally:
        keep.stop()
    assert keep.proc.returncode == 0
    audit = json.loads(motte(home, "steward", "audit", "--json").stdout)
    assert [(a["decision"], a["workload_digest"]) for a in audit] == [("accepted", digest)]
    assert any("accepted 127.0.0.1" in line for line in steward.lines)


def test_a_steward_whose_policy_refuses_sim_stops_the_keep(tmp_path, home):
    assert motte(home, "steward", "init").returncode == 0
    steward, url = start_steward(home)
    try:
        directory, port = http_hello(tmp_path)
        run = motte(
            home, "run", directory, "--steward", url, "--backend", "sim", "--allow-insecure-sim"
        )
        assert run.returncode == 125
        assert "refused this Keep: kind: sim evidence comes from an INSECURE software keep" in (
            run.stderr
        )
        wait_for(lambda: any("rejected" in line for line in steward.lines))
        assert any("kind: sim evidence" in line for line in steward.lines)
        # Nothing was served: a client finds nobody to talk to.
        client = motte(
            home,
            "connect",
            f"tls://127.0.0.1:{port}",
            "--steward-ca",
            home / "steward" / "ca.pem",
            "--expect-digest",
            DIGEST,
        )
        assert client.returncode == 1 and "cannot connect" in client.stderr
    finally:
        steward.stop()
    [row] = json.loads(motte(home, "steward", "audit", "--json").stdout)
    assert row["decision"] == "rejected" and row["reason"].startswith("kind:")


def test_a_keep_without_consent_refuses_to_produce_sim_evidence(tmp_path, home, dev_steward):
    _, url = dev_steward
    directory, _ = http_hello(tmp_path)
    run = motte(home, "run", directory, "--steward", url, "--backend", "sim")
    assert run.returncode == 125 and "needs --allow-insecure-sim" in run.stderr
    assert json.loads(motte(home, "steward", "audit", "--json").stdout) == []


def refused(url: str, csr_for) -> AttestationRefusedError:
    with StewardClient(url) as client:
        nonce = client.nonce()
        with pytest.raises(AttestationRefusedError) as e:
            for csr in csr_for(nonce):
                client.attest(csr)
    return e.value


def test_replayed_expired_tampered_and_unbound_evidence_are_refused(home, dev_steward):
    steward, url = dev_steward
    replay = refused(url, lambda nonce: [keep_csr(nonce)] * 2)
    assert [r.split(":")[0] for r in replay.reasons] == ["nonce"]
    assert "already used" in replay.reasons[0]

    def tampered(nonce):
        return [keep_csr(nonce, tamper=lambda ev: Evidence(ev.kind, flip(ev.raw, 0x60)))]

    assert [r.split(":")[0] for r in refused(url, tampered).reasons] == ["sim-signature"]
    unbound = refused(url, lambda nonce: [keep_csr(nonce, bound_digest=OTHER_DIGEST)])
    assert [r.split(":")[0] for r in unbound.reasons] == ["report-data"]
    wait_for(lambda: sum("rejected" in line for line in steward.lines) == 3)
    logged = "\n".join(line for line in steward.lines if "rejected" in line)
    for reason in ("already used", "sim-signature", "report-data"):
        assert reason in logged


def test_an_expired_nonce_is_refused(home):
    assert motte(home, "steward", "init", "--allow-insecure-sim").returncode == 0
    config_set(home, "nonce_lifetime", "1")
    steward, url = start_steward(home)
    try:
        with StewardClient(url) as client:
            nonce = client.nonce()
            time.sleep(1.5)  # past the one-second lifetime; no assertion on timing
            with pytest.raises(AttestationRefusedError, match="nonce: the nonce expired"):
                client.attest(keep_csr(nonce))
        wait_for(lambda: any("rejected" in line for line in steward.lines))
        assert any("nonce: the nonce expired" in line for line in steward.lines)
    finally:
        steward.stop()
    [row] = json.loads(motte(home, "steward", "audit", "--json").stdout)
    assert row["reason"].startswith("nonce: the nonce expired")


STEWARD_WITH_TEST_ROOTS = textwrap.dedent(
    """
    import sys
    from cryptography import x509
    from motte.attest.snp import AmdChain, AmdRoots
    from motte.steward import Steward
    from motte.steward._server import serve

    ask, ark = x509.load_pem_x509_certificates(open(sys.argv[1], "rb").read())
    roots = AmdRoots({("Milan", "vcek"): AmdChain("Milan", "vcek", ark, ask)})
    with Steward(amd_roots=roots) as steward:
        serve(steward, "127.0.0.1:0")
    """
)


def test_debug_snp_evidence_is_refused_end_to_end(tmp_path, home):
    from motte.keep._attest import attest_keep
    from tests.keep.backends.kernels import FakeTsmKernel
    from tests.steward.test_service import fake_snp_backend

    assert motte(home, "steward", "init").returncode == 0  # the default policy
    good_backend, amd = fake_snp_backend(tmp_path / "good")
    roots = tmp_path / "fake-amd.pem"
    roots.write_bytes(
        amd.ask.public_bytes(serialization.Encoding.PEM)
        + amd.ark.public_bytes(serialization.Encoding.PEM)
    )
    script = tmp_path / "steward_with_test_roots.py"
    script.write_text(STEWARD_WITH_TEST_ROOTS)
    steward, url = start_steward(home, argv=[sys.executable, str(script), str(roots)])
    try:
        identity = attest_keep(url, DIGEST, good_backend)
        assert identity.certificate.kind == "snp"
        assert isinstance(good_backend.tsm, FakeTsmKernel) and good_backend.tsm.log.inblobs
        debug_backend, _ = fake_snp_backend(tmp_path / "debug", policy=0x30000 | 1 << 19)
        with pytest.raises(AttestationRefusedError) as e:
            attest_keep(url, DIGEST, debug_backend)
        assert [r.split(":")[0] for r in e.value.reasons] == ["debug"]
        assert "a debug TEE exposes its memory" in e.value.message
        wait_for(lambda: any("rejected" in line for line in steward.lines))
        assert any("debug:" in line for line in steward.lines)
    finally:
        steward.stop()
    rows = json.loads(motte(home, "steward", "audit", "--json").stdout)
    assert [(r["decision"], r["kind"]) for r in rows] == [("accepted", "snp"), ("rejected", "snp")]


def test_the_keep_key_follows_the_tee(tmp_path):
    from motte.keep._attest import keep_key

    assert isinstance(keep_key("snp").curve, ec.SECP384R1)
    assert isinstance(keep_key("sim").curve, ec.SECP256R1)


def test_sighup_reloads_the_policy_of_a_running_steward_and_the_audit_log_says_so(home):
    """A Steward serving the development policy is told to judge by the production one: after
    SIGHUP the same sim evidence is refused; a policy that does not load changes nothing."""
    from motte.steward._setup import DEFAULT_POLICY

    assert motte(home, "steward", "init", "--allow-insecure-sim").returncode == 0
    proc, url = start_steward(home)
    policy = home / "steward" / "policy.toml"
    dev = policy.read_text()

    def attest_ok() -> bool:
        with StewardClient(url) as client:
            try:
                client.attest(keep_csr(client.nonce()))
            except AttestationRefusedError:
                return False
        return True

    def reloads_said() -> int:
        return sum("policy reloaded" in line or "reload refused" in line for line in proc.lines)

    try:
        assert attest_ok()
        policy.write_text(DEFAULT_POLICY)
        proc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: reloads_said() == 1, timeout=30)
        assert any("policy reloaded: 'steward-default'" in line for line in proc.lines), proc.log
        assert not attest_ok()

        policy.write_text(dev + "\n[snp]\nmeasurment = 'x'\n")
        proc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: reloads_said() == 2, timeout=30)
        assert any("reload refused: " in line and "unknown key" in line for line in proc.lines)
        assert not attest_ok()  # still the production policy
        assert proc.proc.poll() is None
    finally:
        proc.stop()
    policy.write_text(DEFAULT_POLICY)  # `steward audit` opens the Steward, policy and all
    r = motte(home, "steward", "audit", "--policy", "--json")
    assert r.returncode == 0, r.stderr
    events = json.loads(r.stdout)
    assert [e["event"] for e in events] == ["loaded", "reloaded", "reload-refused"]
    assert events[1]["policy_name"] == "steward-default"
    decisions = json.loads(motte(home, "steward", "audit", "--json").stdout)
    assert [d["decision"] for d in decisions] == ["accepted", "rejected", "rejected"]
