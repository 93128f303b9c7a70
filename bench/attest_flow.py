#!/usr/bin/env python3
"""Attestation on the way up: from ``motte run`` starting to its first request served, with
a Steward (sim backend) against the same Keep without one, measured in the same run.

    python bench/attest_flow.py [--rounds 10] [--json]

One Steward process (``motte steward serve``, a dev policy that accepts this installation's
sim keeps) serves throughout. Each round starts fresh ``motte run`` processes on a copy of
examples/http-hello (a free port), interleaved:

- ``motte run, no Steward``      the baseline: self-signed certificate, nothing attested;
- ``motte run --steward, dir``   the same directory, attested (module digest);
- ``motte run --steward, pkg``   the packaged workload from the local store, attested
                                 (package digest), the demo's path.

The time is from ``Popen`` to the first HTTP response read over TLS by a client polling the
port every 5 ms. Then, in this process, the protocol alone, warm (imports and the sim
measurement done), against a plain ``GET /nonce`` round trip to the same Steward:

- ``GET /nonce``                 one HTTP round trip on a fresh connection (the floor);
- ``attest_keep``                key pair, nonce, sim evidence, CSR, the Steward's
                                 verification and issuance, the chain checked.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import ROOT, Case, dump, interleave, table

EXAMPLE = ROOT / "examples" / "http-hello"


def motte_command() -> list[str]:
    script = Path(sys.executable).parent / "motte"
    return [str(script)] if script.exists() else [sys.executable, "-m", "motte"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_response(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Poll until one HTTPS request is answered (any certificate: we time, not verify)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"motte run exited with {proc.returncode}")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
                ctx.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                if tls.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except (OSError, ssl.SSLError):
            time.sleep(0.005)
    raise RuntimeError("no response")


def keep_case(name: str, argv: list[str], port: int, env: dict[str, str]) -> Case:
    def run() -> float:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            first_response(port, proc)
            elapsed = time.perf_counter() - start
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        return elapsed

    return Case(name, run)


def start_steward(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [*motte_command(), "steward", "serve", "--listen", "127.0.0.1:0"],
        env=env,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    for raw in proc.stderr:
        m = re.search(r"serving on (http://\S+)", raw.decode())
        if m:
            return proc, m.group(1)
    raise RuntimeError("the Steward did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="motte-bench-attest-"))
    home = tmp / "home"
    env = {**os.environ, "MOTTE_HOME": str(home), "PYTHONPYCACHEPREFIX": str(tmp / "pyc")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["MOTTE_HOME"] = str(home)  # this process's own attest_keep, same sim key
    motte = motte_command()
    subprocess.run(
        [*motte, "steward", "init", "--allow-insecure-sim"],
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    workload = tmp / "http-hello"
    shutil.copytree(EXAMPLE, workload)
    text = (workload / "Motte.toml").read_text()
    (workload / "Motte.toml").write_text(re.sub(r"(?m)^port = \d+", f"port = {port}", text))
    subprocess.run(
        [*motte, "package", str(workload), "--tag", "bench/http-hello:1.0"],
        env=env,
        check=True,
        capture_output=True,
    )
    steward, url = start_steward(env)
    try:
        sim = ["--steward", url, "--backend", "sim", "--allow-insecure-sim"]
        keeps = [
            keep_case("motte run, no Steward", [*motte, "run", str(workload)], port, env),
            keep_case("motte run --steward, dir", [*motte, "run", str(workload), *sim], port, env),
            keep_case(
                "motte run --steward, pkg", [*motte, "run", "bench/http-hello:1.0", *sim], port, env
            ),
        ]
        interleave(keeps, ns.rounds)
        rows = table(
            f"start to first request served, {ns.rounds} rounds (wall clock)",
            keeps,
            keeps[0],
            {},
        )

        from motte.keep._attest import attest_keep
        from motte.keep.backends import SimBackend, sim_measurement

        sim_measurement()  # once per process, as in a Keep; timed below on its own
        backend = SimBackend(allow_insecure_sim=True)
        digest = "sha256:" + "ab" * 32

        def nonce() -> float:
            import http.client

            start = time.perf_counter()
            host, _, p = url.removeprefix("http://").partition(":")
            conn = http.client.HTTPConnection(host, int(p), timeout=10)
            conn.request("GET", "/nonce")
            json.loads(conn.getresponse().read())
            conn.close()
            return time.perf_counter() - start

        def attest() -> float:
            start = time.perf_counter()
            attest_keep(url, digest, backend)
            return time.perf_counter() - start

        protocol = [Case("GET /nonce", nonce), Case("attest_keep (sim, warm)", attest)]
        interleave(protocol, ns.rounds * 5)
        rows += table(
            f"the protocol alone, {ns.rounds * 5} rounds (wall clock, in-process)",
            protocol,
            protocol[0],
            {},
        )
        sim_measurement.cache_clear()
        start = time.perf_counter()
        sim_measurement()
        measure = time.perf_counter() - start
        print(
            f"\nsim measurement (SHA-384 of motte + wasmtime), once per process: "
            f"{measure * 1e3:.0f} ms"
        )
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if ns.json:
            dump(rows, {"sim_measurement_s": measure, "loadavg": os.getloadavg()})
    finally:
        steward.send_signal(signal.SIGTERM)
        steward.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
