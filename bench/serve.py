#!/usr/bin/env python3
"""HTTP listener throughput: the example HTTP workload through a Keep (TLS 1.3, a fresh
instance per request) against a minimal plain-Python HTTPS server answering the same bytes,
driven by the same load generator in the same run.

    python bench/serve.py [--rounds 5] [--duration 5] [--connections 16] [--json]

The two servers run as their own processes: ``motte run`` on a copy of
examples/http-hello/Motte.toml (a free port), and ``http.server.ThreadingHTTPServer`` with
an ``ssl`` socket (TLS 1.3 only, HTTP/1.1 keep-alive, no request log) answering
``Hello, world!`` with the same headers. The load generator is wrk (``apt-get install
wrk``): written in C, it leaves the two cores to the servers as far as it can; both servers
get the same command line. Rounds alternate between the servers; each figure is the median
over the rounds. Targets (issue 21): the Keep reaches >= 1.2 x the plain server's requests
per second, at <= 1.2 x its CPU time per request (the listener issue's first goal was
>= 0.8 x the requests per second).

Beside throughput and latency it prints the servers' CPU time per request (from /proc,
worker processes included): on a machine shared with other work, throughput moves with the
neighbours' load, CPU per request much less. Then the floor: what one instance of the
same guest costs alone (one thread, no sockets, no TLS), against the plain server's whole
request; no serving design around that instance can spend less per request.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _harness import ROOT, dump
from motte.keep.serve._options import cpus

TARGET = 1.2  # requests per second, Keep / plain: at least
TARGET_CPU = 1.2  # CPU time per request, Keep / plain: at most
BODY = b"Hello, world!\n"

PLAIN_SERVER = textwrap.dedent(
    """
    import http.server, ssl, sys
    BODY = b"Hello, world!\\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"          # keep-alive, as the Keep
        disable_nagle_algorithm = True         # as asyncio does: no 40 ms delayed-ACK stalls

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()                 # send_response adds Server and Date
            self.wfile.write(BODY)

        def log_message(self, *args):          # no per-request log, as the Keep
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_tls(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench/serve.py: a server exited with {proc.returncode}")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                ctx.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                assert tls.version() == "TLSv1.3", tls.version()
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench/serve.py: nothing listens on port {port}")


def check_same_answer(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    conn.request("GET", "/")
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status != 200 or body != BODY:
        raise SystemExit(f"bench/serve.py: port {port} answered {response.status} {body!r}")
    return body


def _seconds(text: str) -> float:
    value, suffix = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[suffix]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (the Keep's worker processes)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    ticks = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk(port: int, duration: float, connections: int, threads: int, pid: int) -> dict[str, float]:
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "--timeout",
            "10s",
            f"https://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_errors = re.search(r"Socket errors: (.*)", out)
    if errors or sock_errors:
        raise SystemExit(f"bench/serve.py: errors under load on port {port}:\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "cpu_per_request": (cpu_seconds(pid) - cpu_before) / max(1, requests),
        "rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _seconds(latency["50"]),
        "p99": _seconds(latency["99"]),
    }


def start_servers(tmp: Path) -> tuple[dict[str, int], list[subprocess.Popen[bytes]]]:
    from motte.keep.serve import self_signed_identity

    identity = self_signed_identity()
    (tmp / "cert.pem").write_bytes(identity.certificate_chain_pem)
    (tmp / "key.pem").write_bytes(identity.private_key_pem)
    (tmp / "plain.py").write_text(PLAIN_SERVER)
    ports = {"plain": free_port(), "keep": free_port()}
    example = ROOT / "examples" / "http-hello"
    manifest = (example / "Motte.toml").read_text()
    manifest = manifest.replace('"http-hello.wasm"', f'"{example / "http-hello.wasm"}"')
    manifest = re.sub(r"port = \d+", f"port = {ports['keep']}", manifest)
    (tmp / "Motte.toml").write_text(manifest)
    env = {**os.environ, "MOTTE_HOME": str(tmp / "home")}
    motte = shutil.which("motte", path=str(Path(sys.executable).parent)) or "motte"
    procs = [
        subprocess.Popen(
            [sys.executable, str(tmp / "plain.py"), str(ports["plain"]), "cert.pem", "key.pem"],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "plain.log", "wb"),  # noqa: SIM115 (closed with the process)
        ),
        subprocess.Popen(
            [motte, "run", str(tmp / "Motte.toml")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "keep.log", "wb"),  # noqa: SIM115 (closed with the process)
        ),
    ]
    for port, proc in zip(ports.values(), procs, strict=True):
        wait_for_tls(port, proc)
        check_same_answer(port)
    return ports, procs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/serve.py: wrk not found: apt-get install wrk")
    samples: dict[str, list[dict[str, float]]] = {"plain": [], "keep": []}
    with tempfile.TemporaryDirectory(prefix="motte-bench-serve-") as tmp:
        ports, procs = start_servers(Path(tmp))
        try:
            pids = {"plain": procs[0].pid, "keep": procs[1].pid}
            for name, port in ports.items():  # warm-up, not recorded
                wrk(port, 1.0, ns.connections, ns.threads, pids[name])
            for _ in range(ns.rounds):
                for name, port in ports.items():
                    samples[name].append(
                        wrk(port, ns.duration, ns.connections, ns.threads, pids[name])
                    )
        finally:
            procs[1].send_signal(signal.SIGTERM)  # the Keep stops gracefully
            procs[0].terminate()
            keep_status = procs[1].wait(30)
            procs[0].wait(30)
        if keep_status != 0:
            sys.exit(f"bench/serve.py: motte run exited with {keep_status} on SIGTERM")
    return report(samples, ns)


INSTANCE_ALONE = "the instance alone (floor)"
NOOP_INSTANCE = "(a no-op guest's instance)"
#: A WASI command that does nothing: what an instance costs before the guest's own work.
NOOP_WAT = '(module (memory (export "memory") 1) (func (export "_start")))'


def breakdown(iterations: int = 2000) -> dict[str, float]:
    """CPU per request of each stage of the Keep's HTTP path, in this process, one thread, no
    sockets: where a request's time goes before any locking, I/O or cold cache is added
    (under load each stage costs more: docs/performance.md). For reference, h11's reading
    of the same request (the listener's path for uncommon ones)."""
    import h11
    import wasmtime

    from motte.keep import PreparedWorkload
    from motte.keep.serve._cgi import (
        CgiRequest,
        CgiServer,
        cgi_environ,
        encode_response,
        response_from_run,
    )
    from motte.keep.serve._http import http_date
    from motte.keep.serve._request import parse_common_request
    from motte.manifest import load_manifest

    manifest = load_manifest(ROOT / "examples" / "http-hello" / "Motte.toml")
    workload = PreparedWorkload.prepare(manifest).for_many_instances()  # as the listeners run it
    noop_wasm = bytes(wasmtime.wat2wasm(NOOP_WAT))
    noop = PreparedWorkload.prepare(manifest, module=noop_wasm).for_many_instances()
    server = CgiServer("web", 8443, True, "127.0.0.1")
    raw = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nUser-Agent: bench\r\n\r\n"
    head = parse_common_request(raw)[0]  # type: ignore[index]
    env_alone = cgi_environ(
        CgiRequest("GET", head.target, "1.1", head.headers, None, ("127.0.0.1", 40000)), server
    )

    def h11_parse(_stage: int) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        conn.receive_data(raw)
        conn.next_event()
        conn.next_event()

    def instance_alone(_stage: int) -> None:
        workload.run(env=env_alone, stdin=b"", stdout="capture", stderr="inherit")

    def noop_instance(_stage: int) -> None:
        noop.run(stdin=b"", stdout="capture", stderr="null")

    def one(stage: int) -> None:
        parsed = parse_common_request(raw)
        assert parsed is not None
        request = parsed[0]
        if stage == 0:
            return
        env = cgi_environ(
            CgiRequest(
                request.method.decode(),
                request.target,
                request.http_version.decode(),
                request.headers,
                None,
                ("127.0.0.1", 40000),
            ),
            server,
        )
        if stage == 1:
            return
        result = workload.run(env=env, stdin=b"", stdout="capture", stderr="inherit")
        if stage == 2:
            return
        encode_response(response_from_run(result)[0], close=False, date=http_date())

    stages = [
        ("parse (common request)", one, 0),
        ("+ CGI environment", one, 1),
        ("+ instance", one, 2),
        ("+ answer", one, 3),
        ("(h11 parse, for reference)", h11_parse, 0),
        (INSTANCE_ALONE, instance_alone, 0),
        (NOOP_INSTANCE, noop_instance, 0),
    ]
    totals = {}
    for name, fn, stage in stages:
        for _ in range(iterations // 10):
            fn(stage)
        start = time.process_time()
        for _ in range(iterations):
            fn(stage)
        totals[name] = (time.process_time() - start) / iterations
    return totals


def report(samples: dict[str, list[dict[str, float]]], ns: argparse.Namespace) -> int:
    def med(name: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[name])

    def spread(name: str, key: str) -> float:
        values = [s[key] for s in samples[name]]
        if len(values) < 4:
            return 0.0
        q = statistics.quantiles(values, n=4)
        return (q[2] - q[0]) / statistics.median(values)

    labels = {
        "plain": "plain Python HTTPS (baseline)",
        "keep": "motte Keep, instance per request",
    }
    print(
        f"\nHTTPS GET /, {ns.connections} connections, {ns.threads} wrk threads, "
        f"{ns.duration:g} s x {ns.rounds} rounds (medians; spread = IQR/median of rps)"
    )
    print(
        f"  {'server':<34} {'req/s':>9} {'spread':>7} {'p50':>9} {'p99':>9} {'ratio':>6}"
        f" {'CPU/req':>9}"
    )
    rows = []
    base = med("plain", "rps")
    for name in ("plain", "keep"):
        rps = med(name, "rps")
        row = {
            "server": name,
            "rps": rps,
            "spread": spread(name, "rps"),
            "p50_s": med(name, "p50"),
            "p99_s": med(name, "p99"),
            "ratio": rps / base,
            "cpu_per_request_s": med(name, "cpu_per_request"),
            "rounds": len(samples[name]),
        }
        rows.append(row)
        print(
            f"  {labels[name]:<34} {rps:>9.0f} {row['spread']:>6.0%} "
            f"{row['p50_s'] * 1e3:>7.2f}ms {row['p99_s'] * 1e3:>7.2f}ms {row['ratio']:>6.2f}"
            f" {row['cpu_per_request_s'] * 1e6:>7.0f}µs"
        )
    ratio = rows[1]["ratio"]
    cpu_ratio = rows[1]["cpu_per_request_s"] / rows[0]["cpu_per_request_s"]
    met = "met" if ratio >= TARGET else "MISSED"
    print(f"\nKeep throughput vs plain server: {ratio:.2f} (target >= {TARGET}: {met})")
    met = "met" if cpu_ratio <= TARGET_CPU else "MISSED"
    print(
        f"Keep CPU per request vs plain server's (server processes, user + system): "
        f"{cpu_ratio:.2f} (target <= {TARGET_CPU}: {met}); the Keep serves with {cpus()} "
        "process(es), the plain server is bound to one core by its interpreter lock"
    )
    stages = breakdown()
    print("\nThe Keep's HTTP path in one thread, no sockets, CPU per request (cumulative):")
    for name, seconds in stages.items():
        print(f"  {name:<30} {seconds * 1e6:7.0f}µs")
    plain_cpu = rows[0]["cpu_per_request_s"]
    floor = stages[INSTANCE_ALONE] / plain_cpu
    print(
        f"\nFloor: the instance alone costs {floor:.2f} x the plain server's whole request "
        f"(CPU); a no-op guest's instance {stages[NOOP_INSTANCE] / plain_cpu:.2f} x"
    )
    if ns.json:
        dump(
            rows,
            {
                "target": TARGET,
                "target_cpu": TARGET_CPU,
                "ratio": ratio,
                "cpu_ratio": cpu_ratio,
                "floor": floor,
                "load": vars(ns),
                "breakdown": stages,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
