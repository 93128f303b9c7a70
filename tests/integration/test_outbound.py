"""Outbound connections against real peers: ``openssl s_server`` restricted to what each
test names, nginx, and a TCP recorder that counts the connections it accepts.

The guest is examples/outbound (C, through the motte_connect imports); the Keep is the
in-process API (load_manifest, apply_grants, PreparedWorkload), as ``motte run`` drives
it. Each check that something was refused "without a connection attempt" looks at the
wire: the recorder's accepted connections, its backlog drained once the guest has exited.
"""

from __future__ import annotations

import shutil
import socket
import textwrap
import time
from pathlib import Path

import pytest

from motte.manifest import GrantError, apply_grants, grants_from_flags, load_manifest
from tests.integration._tls_peers import Pki, Recorder, make_pki, s_server
from tests.keep.conftest import EXAMPLES

pytestmark = pytest.mark.integration

# WASI errno values the guest exits with (wasi-libc's errno.h).
EACCES, EDQUOT, EFBIG, EHOSTUNREACH, EMFILE, EPROTO, ETIMEDOUT = 2, 19, 22, 23, 33, 65, 73


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", "vendor")


def keep(
    tmp_path: Path,
    connect: str,
    *grants: str,
    args: tuple[str, ...] = ("get", "vendor", "/"),
    limits: str = "",
    stdin: bytes = b"",
):
    """Run examples/outbound with this [[connect]] text and these --grant flags."""
    from motte.keep import PreparedWorkload

    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    shutil.copy(EXAMPLES / "outbound" / "outbound.wasm", app)
    (app / "Motte.toml").write_text(
        'workload = "outbound.wasm"\nenv = { API_HOST = "api.vendor.example" }\n'
        + (f"[limits]\n{limits}\n" if limits else "")
        + textwrap.dedent(connect)
    )
    granted = apply_grants(
        load_manifest(app / "Motte.toml"), package=None, flags=grants_from_flags(list(grants))
    )
    workload = PreparedWorkload.prepare(granted.manifest)
    result = workload.run(args=list(args), stdin=stdin, stdout="capture", stderr="capture")
    return result.exit_code, result.stdout.decode(), result.stderr.decode()


VENDOR = """
[[connect]]
name = "vendor"
host = "api.vendor.example"
port = 443
"""


def vendor(tls: str = "") -> str:
    return VENDOR + (f"[connect.tls]\n{textwrap.dedent(tls)}" if tls else "")


# -- the allow-list and the server's verification --------------------------------------------


def test_a_granted_destination_is_reached_over_verified_tls(tmp_path, pki):
    peer = s_server(tmp_path / "s", pki)
    try:
        code, out, err = keep(tmp_path, vendor(), f"connect:vendor={peer.address},ca={pki.ca}")
    finally:
        peer.stop()
    assert code == 0, err
    assert "HTTP/1.0 200 ok" in out
    # s_server's page describes the session the Keep made: TLS 1.3 by default.
    assert "New, TLSv1.3, Cipher is TLS_" in out
    assert "Verify return code: 0 (ok)" in out


def test_a_server_certificate_from_another_ca_is_refused(tmp_path, pki):
    other = make_pki(tmp_path / "other", "other")
    peer = s_server(tmp_path / "s", pki)
    try:
        code, _, err = keep(tmp_path, vendor(), f"connect:vendor={peer.address},ca={other.ca}")
    finally:
        peer.stop()
    assert code == EPROTO
    assert "server not verified: unable to get local issuer certificate" in err


def test_the_system_roots_do_not_know_a_private_ca(tmp_path, pki):
    peer = s_server(tmp_path / "s", pki)
    try:
        code, _, err = keep(tmp_path, vendor(), f"connect:vendor={peer.address}")
    finally:
        peer.stop()
    assert code == EPROTO
    assert "server not verified" in err


def test_the_server_name_is_verified(tmp_path, pki):
    peer = s_server(tmp_path / "s", pki)
    try:
        code, _, err = keep(
            tmp_path,
            vendor('server_name = "db.vendor.example"'),
            f"connect:vendor={peer.address},ca={pki.ca}",
        )
    finally:
        peer.stop()
    assert code == EPROTO
    assert "Hostname mismatch" in err or "hostname mismatch" in err.lower()


def test_a_name_not_granted_is_refused_without_a_connection(tmp_path):
    recorder = Recorder()
    try:
        connect = f"""
        [[connect]]
        name = "vendor"
        host = "127.0.0.1"
        port = {recorder.port}
        tls = false
        """
        code, _, err = keep(tmp_path, connect, args=("get", "evil", "/"))
        accepted = recorder.count_when_settled(0)
    finally:
        recorder.close()
    assert code == EACCES
    assert "connect evil: not a destination this Keep was granted" in err
    assert accepted == 0


def _name_resolving_to_loopback() -> str:
    for name in (socket.gethostname(), "localhost.localdomain", "ip6-localhost"):
        try:
            infos = socket.getaddrinfo(name, 1, type=socket.SOCK_STREAM)
        except OSError:
            continue
        if name != "localhost" and infos and all(i[4][0].startswith("127.") for i in infos):
            return name
    pytest.skip("no host name here resolves to 127.0.0.0/8 (besides localhost)")


def test_a_name_that_resolves_to_this_hosts_loopback_is_refused_on_the_wire(tmp_path):
    """A granted DNS name that resolves to 127.x is not a grant of this host's loopback
    (DNS rebinding): the Keep refuses before connecting."""
    name = _name_resolving_to_loopback()
    recorder = Recorder()
    try:
        connect = f"""
        [[connect]]
        name = "vendor"
        host = "{name}"
        port = {recorder.port}
        """
        code, _, err = keep(tmp_path, connect)
        accepted = recorder.count_when_settled(0)
    finally:
        recorder.close()
    assert code == EHOSTUNREACH
    assert f"{name.lower()} resolves to 127." in err
    assert "this host or its link, which the grant does not reach" in err
    assert accepted == 0


def test_plain_text_only_to_a_loopback_peer():
    from motte.manifest import Manifest, Workload
    from motte.manifest._connect import Connect

    manifest = Manifest(
        Workload(path=Path("x.wasm")), connect=(Connect("db", "db.example", 5432, None),)
    )
    with pytest.raises(GrantError, match=r"tls = false \(PLAIN TEXT\) reaches only a loopback"):
        apply_grants(manifest, package=None)


# -- the expert's settings, checked in s_server's own account of the session ------------------


def test_tls12_cipher_suites_take_effect(tmp_path, pki):
    peer = s_server(tmp_path / "s", pki, "-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305")
    grant = f"connect:vendor={peer.address},ca={pki.ca}"
    try:
        miss = keep(tmp_path, vendor('tls12_ciphers = ["ECDHE-ECDSA-AES128-GCM-SHA256"]'), grant)
        hit = keep(tmp_path, vendor('tls12_ciphers = ["ECDHE-ECDSA-CHACHA20-POLY1305"]'), grant)
    finally:
        peer.stop()
    assert miss[0] == EPROTO, miss
    assert "handshake" in miss[2]
    assert hit[0] == 0, hit
    assert "New, TLSv1.2, Cipher is ECDHE-ECDSA-CHACHA20-POLY1305" in hit[1]
    # What the Keep offered, as s_server saw it: of TLS 1.2's suites, that one alone.
    common = hit[1].split("Ciphers common between both SSL end points:\n", 1)[1]
    common = common.split("Signature Algorithms", 1)[0].split()
    assert [c for c in common if not c.startswith("TLS_")] == ["ECDHE-ECDSA-CHACHA20-POLY1305"]


def test_tls13_suites_take_effect(tmp_path, pki):
    peer = s_server(tmp_path / "s", pki, "-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256")
    grant = f"connect:vendor={peer.address},ca={pki.ca}"
    try:
        miss = keep(tmp_path, vendor('tls13_ciphers = ["TLS_AES_128_GCM_SHA256"]'), grant)
        hit = keep(tmp_path, vendor('tls13_ciphers = ["TLS_CHACHA20_POLY1305_SHA256"]'), grant)
    finally:
        peer.stop()
    assert miss[0] == EPROTO, miss
    assert hit[0] == 0, hit
    assert "New, TLSv1.3, Cipher is TLS_CHACHA20_POLY1305_SHA256" in hit[1]


def test_protocol_versions_take_effect(tmp_path, pki):
    peer = s_server(tmp_path / "s", pki, "-tls1_2")
    grant = f"connect:vendor={peer.address},ca={pki.ca}"
    try:
        only13 = keep(tmp_path, vendor('min_version = "1.3"'), grant)
        default = keep(tmp_path, vendor(), grant)
    finally:
        peer.stop()
    assert only13[0] == EPROTO, only13
    assert default[0] == 0, default
    assert "Protocol  : TLSv1.2" in default[1]


def test_groups_take_effect(tmp_path, pki):
    peer = s_server(tmp_path / "s", pki, "-groups", "P-384")
    grant = f"connect:vendor={peer.address},ca={pki.ca}"
    try:
        miss = keep(tmp_path, vendor('groups = ["X25519"]'), grant)
        hit = keep(tmp_path, vendor('groups = ["P-384"]'), grant)
    finally:
        peer.stop()
    assert miss[0] == EPROTO, miss
    assert hit[0] == 0, hit
    assert "Supported groups: secp384r1\n" in hit[1]


def test_pins_are_checked(tmp_path, pki):
    import hashlib

    spki = "sha256:" + hashlib.sha256(pki.spki_der).hexdigest()
    cert = "sha256:" + hashlib.sha256(pki.cert_der).hexdigest()
    wrong = "sha256:" + "0" * 64
    peer = s_server(tmp_path / "s", pki)
    grant = f"connect:vendor={peer.address},ca={pki.ca}"
    try:
        by_key = keep(tmp_path, vendor(f'pin_spki = ["{wrong}", "{spki}"]'), grant)
        by_cert = keep(tmp_path, vendor(f'pin_certificate = "{cert}"'), grant)
        miss = keep(tmp_path, vendor(f'pin_spki = ["{wrong}"]'), grant)
    finally:
        peer.stop()
    assert by_key[0] == 0, by_key
    assert by_cert[0] == 0, by_cert
    assert miss[0] == EPROTO
    assert "matches none of the pins" in miss[2]


def test_skipping_verification_needs_the_manifest_and_the_hosts_consent(tmp_path, pki):
    """unsafe_skip_verification, granted by name: the pin is then the only check."""
    import hashlib

    spki = "sha256:" + hashlib.sha256(pki.spki_der).hexdigest()
    settings = vendor(f'unsafe_skip_verification = true\npin_spki = "{spki}"')
    peer = s_server(tmp_path / "s", pki)
    try:
        with pytest.raises(GrantError, match=r"INSECURE TLS \(unsafe_skip_verification\)"):
            keep(tmp_path, settings, f"connect:vendor={peer.address}")
        code, out, err = keep(
            tmp_path, settings, f"connect:vendor={peer.address},unsafe_skip_verification"
        )
    finally:
        peer.stop()
    assert code == 0, err
    assert "HTTP/1.0 200 ok" in out


# -- limits ----------------------------------------------------------------------------------


def plain(recorder: Recorder) -> str:
    return f"""
    [[connect]]
    name = "vendor"
    host = "127.0.0.1"
    port = {recorder.port}
    tls = false
    """


def test_a_guest_opening_thousands_of_connections_is_held_at_limits_connections(tmp_path):
    recorder = Recorder()
    try:
        code, out, err = keep(
            tmp_path, plain(recorder), args=("flood", "vendor", "5000"), limits="connections = 16"
        )
        accepted = recorder.count_when_settled(16)
    finally:
        recorder.close()
    assert code == EMFILE, err
    assert out == "opened 16 of 5000\n"
    assert "16 connections already open (limits.connections)" in err
    assert accepted == 16


def test_a_guest_churning_thousands_of_connections_is_held_at_the_default_total(tmp_path):
    """limits.connections_total, at its documented default (1000)."""
    recorder = Recorder()
    try:
        code, out, err = keep(tmp_path, plain(recorder), args=("churn", "vendor", "5000"))
        accepted = recorder.count_when_settled(1000)
    finally:
        recorder.close()
    assert code == EDQUOT, err
    assert out == "opened 1000 of 5000\n"
    assert "1000 connections opened already (limits.connections_total)" in err
    assert accepted == 1000


def test_a_connection_is_bounded_in_bytes(tmp_path):
    recorder = Recorder("flood")
    try:
        code, _, err = keep(
            tmp_path, plain(recorder), args=("send", "vendor"), limits="connection_bytes = 1"
        )
    finally:
        recorder.close()
    assert code == EFBIG, err
    assert "1 MiB sent and received (limits.connection_bytes)" in err


def test_a_connection_is_bounded_in_time(tmp_path):
    recorder = Recorder("silent")
    try:
        code, _, err = keep(
            tmp_path, plain(recorder), args=("send", "vendor"), limits="connection_time = 0.5"
        )
    finally:
        recorder.close()
    assert code == ETIMEDOUT, err
    assert "open for 0.5 s (limits.connection_time)" in err


def test_plain_text_to_a_loopback_peer_is_a_stream_both_ways(tmp_path):
    recorder = Recorder("echo", echo_bytes=5000)
    try:
        code, out, err = keep(
            tmp_path, plain(recorder), args=("send", "vendor"), stdin=b"ping\n" * 1000
        )
    finally:
        recorder.close()
    assert code == 0, err
    assert out == "ping\n" * 1000


# -- a serving Keep: each TCP connection's instance calls out -----------------------------------


def test_a_serving_keeps_instances_call_out_from_every_process(tmp_path, pki):
    """``motte run`` serving a TCP listener (one process per CPU: the workers get the
    destinations through the hand-over) whose guest forwards each client's request to the
    vendor and streams the answer back."""
    import os
    import subprocess
    import sys

    from tests.integration._postgres import free_port

    peer = s_server(tmp_path / "s", pki)
    port = free_port()
    app = tmp_path / "serving"
    app.mkdir()
    shutil.copy(EXAMPLES / "outbound" / "outbound.wasm", app)
    (app / "Motte.toml").write_text(
        'workload = "outbound.wasm"\nargs = ["send", "vendor"]\n'
        f'[[listen]]\nname = "raw"\nport = {port}\nprotocol = "tcp"\ntls = false\n' + VENDOR
    )
    keep = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "motte",
            "run",
            str(app),
            "--grant",
            f"connect:vendor={peer.address},ca={pki.ca}",
        ],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def collect() -> None:
        assert keep.stderr is not None
        lines.extend(iter(keep.stderr.readline, ""))

    import threading

    threading.Thread(target=collect, daemon=True).start()
    try:
        # Not a probe connection: s_server answers one connection at a time, and a probe's
        # instance would hold it waiting for a request.
        deadline = time.monotonic() + 60
        while not any("serving sha256:" in line for line in lines):
            assert time.monotonic() < deadline and keep.poll() is None, lines
            time.sleep(0.05)
        answers = []
        for _ in range(8):
            with socket.create_connection(("127.0.0.1", port), 30) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                s.shutdown(socket.SHUT_WR)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            answers.append(data.decode(errors="replace"))
    finally:
        keep.terminate()
        keep.wait(60)
        peer.stop()
    err = "".join(lines)
    assert all(a.startswith("HTTP/1.0 200 ok") and "New, TLSv1.3" in a for a in answers), (
        answers,
        err,
    )
    assert "motte: error" not in err and "failed" not in err, err
