"""Outbound connections: a request a Keep's guest makes through the Keep's TLS client, against
the same request from a plain Python ``ssl`` client, in the same run.

    .venv/bin/python bench/outbound.py [--rounds 21] [--batch 20] [--json]

The peer is nginx (Debian's) on 127.0.0.1, TLS 1.2/1.3 with a certificate from a CA made
here, answering ``GET /v1/hello`` with a small JSON body; it runs in its own process, so
its work is in neither side's CPU time. Each request opens a new connection (TCP, a TLS
1.3 handshake verifying the server against that CA, the request, the answer to the end):
what examples/outbound's ``get`` does once per instance.

- ``python ssl``   the baseline: ``ssl.create_default_context(cafile=...)``,
                   ``socket.create_connection`` + ``wrap_socket``, ``sendall``, ``recv``
                   until the server closes.
- ``keep, one instance``   one instance of examples/outbound (``get vendor /v1/hello N``)
                   makes the batch's N requests, each through the guest's ``motte_connect``
                   calls (open: connect, handshake, verify; write; read; close): the path a
                   request takes from a running guest.
- ``keep, instance per request``  ``PreparedWorkload.run(args=["get", "vendor",
                   "/v1/hello"])`` per request on the pooled runtime a serving Keep uses
                   (``for_many_instances``): a fresh instance (store, WASI, the module's
                   1 MiB stack), one request, its output captured: what a Keep that starts
                   an instance per HTTP request or TCP connection pays when each calls out.

Per request: wall time (latency) and this process's CPU time (``time.process_time``), each
sample the mean of a batch, the cases interleaved round-robin, medians reported with their
spread. Goal (issue 24): keep / python ssl <= 1.5, latency and CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from _harness import ROOT, Case, dump, interleave, scratch_dir, table, verdict

TARGET = 1.5
REQUEST = b"GET /v1/hello HTTP/1.1\r\nHost: api.vendor.example\r\nConnection: close\r\n\r\n"


def make_pki(directory: Path) -> tuple[Path, Path, Path]:
    """(CA, server certificate, server key) as PEM files; the server is api.vendor.example."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])

    def build(subject, public, extensions):
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        for ext, critical in extensions:
            b = b.add_extension(ext, critical=critical)
        return b.sign(ca_key, hashes.SHA256())

    ca = build(ca_name, ca_key.public_key(), [(x509.BasicConstraints(True, 0), True)])
    sans = x509.SubjectAlternativeName(
        [x509.DNSName("api.vendor.example"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = build(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.vendor.example")]),
        key.public_key(),
        [(sans, False)],
    )
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(work: Path, cert: Path, key: Path) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(exe).exists():
        sys.exit("bench/outbound.py: nginx not found (apt-get install nginx)")
    port = free_port()
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temps = "".join(
        f"  {n}_temp_path {work / n};\n"
        for n in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (work / "nginx.conf").write_text(
        f"""{user}worker_processes 1;
error_log {work}/error.log;
pid {work}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
{temps}  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location = /v1/hello {{ default_type application/json; return 200 '{{"hello":"bench"}}'; }}
  }}
}}
"""
    )
    proc = subprocess.Popen(
        [exe, "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("bench/outbound.py: nginx did not start")
            time.sleep(0.05)


def timer(fn, batch: int, cpu: dict[str, list[float]], name: str):
    """One sample: the mean wall time of ``batch`` calls; their mean CPU time is kept too."""

    def run() -> float:
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(batch):
            fn()
        wall = (time.perf_counter() - w0) / batch
        cpu.setdefault(name, []).append((time.process_time() - c0) / batch)
        return wall

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()

    os.environ.setdefault("MOTTE_HOME", str(scratch_dir("motte-bench-home-")))
    work = scratch_dir("motte-bench-outbound-")
    ca, cert, key = make_pki(work)
    nginx, port = start_nginx(work, cert, key)
    try:
        return measure(ns, work, ca, port)
    finally:
        nginx.terminate()
        nginx.wait(30)


def measure(ns: argparse.Namespace, work: Path, ca: Path, port: int) -> int:
    from motte.keep import PreparedWorkload
    from motte.manifest import apply_grants, grants_from_flags, load_manifest

    context = ssl.create_default_context(cafile=str(ca))

    def python_ssl() -> None:
        raw = socket.create_connection(("127.0.0.1", port))
        with context.wrap_socket(raw, server_hostname="api.vendor.example") as tls:
            tls.sendall(REQUEST)
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]

    app = work / "app"
    shutil.copytree(ROOT / "examples" / "outbound", app)
    granted = apply_grants(
        load_manifest(app / "Motte.toml"),
        package=None,
        flags=grants_from_flags([f"connect:vendor=127.0.0.1:{port},ca={ca}"]),
        environ={},
    )
    workload = PreparedWorkload.prepare(granted.manifest)
    args = ["get", "vendor", "/v1/hello"]

    pooled = workload.for_many_instances()

    def keep_instance() -> None:
        result = pooled.run(args=args, stdout="capture", stderr="capture")
        assert result.exit_code == 0, (result.stdout, result.stderr)

    def keep_batch() -> float:
        c0, w0 = time.process_time(), time.perf_counter()
        result = workload.run(args=[*args, str(ns.batch)], stdout="capture", stderr="capture")
        assert result.exit_code == 0, (result.stdout, result.stderr)
        cpu.setdefault("keep, one instance", []).append((time.process_time() - c0) / ns.batch)
        return (time.perf_counter() - w0) / ns.batch

    cpu: dict[str, list[float]] = {}
    base = Case("python ssl", timer(python_ssl, ns.batch, cpu, "python ssl"))
    kept = Case("keep, one instance", keep_batch, baseline="python ssl")
    each = Case(
        "keep, instance per request",
        timer(keep_instance, ns.batch, cpu, "keep, instance per request"),
        baseline="python ssl",
    )
    cases = [base, kept, each]
    interleave(cases, ns.rounds)
    for case in cases:
        del cpu[case.name][0]  # the warm-up's
    rows = table("latency per request (a new TLS connection each)", cases, base, {})
    cpu_cases = [Case(c.name, lambda: 0.0, samples=cpu[c.name]) for c in cases]
    rows += table("CPU time per request (this process)", cpu_cases, cpu_cases[0], {})
    figures = {}
    print()
    for i, case in enumerate(cases[1:], 1):
        latency = case.median / base.median
        cpu_ratio = cpu_cases[i].median / cpu_cases[0].median
        figures[case.name] = {"latency_ratio": latency, "cpu_ratio": cpu_ratio}
        print(verdict(f"latency, {case.name} / python ssl", latency, TARGET))
        print(verdict(f"CPU, {case.name} / python ssl", cpu_ratio, TARGET))
    if ns.json:
        dump(rows, {"figures": figures, "target": TARGET})
    return 0


if __name__ == "__main__":
    sys.exit(main())
