"""Real peers for the outbound-connection tests, each on 127.0.0.1 and a free port, started
and stopped by the test: nginx with TLS (and client-certificate checks), ``openssl
s_server`` restricted to what a test names, and a plain TCP recorder that counts every
connection it accepts (to check on the wire that a refused call never connected).

Certificates are made with ``cryptography``: a CA and a server certificate for
``api.vendor.example``, ``localhost`` and 127.0.0.1, each test's own.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration._peers import wait_port
from tests.integration._postgres import free_port

SERVER_NAMES = ("api.vendor.example", "localhost")


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Pki:
    """A CA and a server certificate it signed, as files in ``directory``."""

    directory: Path
    ca: Path
    cert: Path
    key: Path
    cert_der: bytes
    spki_der: bytes


def make_pki(directory: Path, name: str = "test") -> Pki:
    import ipaddress

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in SERVER_NAMES] + [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAMES[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = Pki(
        directory,
        directory / f"{name}-ca.pem",
        directory / f"{name}-server.pem",
        directory / f"{name}-server.key",
        cert.public_bytes(serialization.Encoding.DER),
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(_pem_key(key))
    return paths


@dataclass
class Peer:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    output: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def s_server(workdir: Path, pki: Pki, *options: str) -> Peer:
    """``openssl s_server -www`` (it answers every GET with a page describing the session:
    protocol, cipher, the groups the client offered) restricted by ``options``."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            shutil.which("openssl") or "/usr/bin/openssl",
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(pki.cert),
            "-key",
            str(pki.key),
            "-www",
            *options,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    peer = Peer(proc, port, workdir)
    threading.Thread(target=_collect, args=(peer,), daemon=True).start()
    wait_port(port)
    return peer


def _collect(peer: Peer) -> None:
    assert peer.proc.stdout is not None
    for raw in peer.proc.stdout:
        peer.output.append(raw.decode(errors="replace").rstrip("\n"))


def nginx_tls(
    workdir: Path, pki: Pki, *, client_ca: Path | None = None, token: str = "s3cret"
) -> Peer:
    """nginx as a vendor's HTTPS API: ``GET /v1/hello`` answers 200 with a JSON body when
    the request carries ``Authorization: Bearer <token>`` (401 otherwise); with
    ``client_ca`` it requires a client certificate that CA issued (400 otherwise, as nginx
    answers). Each request is logged with the TLS protocol, cipher and client-certificate
    verdict in ``access.log``."""
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temps = "".join(
        f"  {name}_temp_path {workdir / name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    verify = (
        f"    ssl_verify_client on;\n    ssl_client_certificate {client_ca};\n"
        "    ssl_verify_depth 1;\n"
        if client_ca is not None
        else ""
    )
    cfg = workdir / "nginx.conf"
    cfg.write_text(
        f"""{user}worker_processes 1;
error_log {workdir}/error.log info;
pid {workdir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  log_format tls '$status $ssl_protocol $ssl_cipher alpn=$ssl_alpn_protocol '
                 'client=$ssl_client_verify subject="$ssl_client_s_dn" request="$request"';
  access_log {workdir}/access.log tls;
{temps}  default_type application/json;
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name api.vendor.example;
    ssl_certificate {pki.cert};
    ssl_certificate_key {pki.key};
    ssl_protocols TLSv1.2 TLSv1.3;
{verify}    location = /v1/hello {{
      if ($http_authorization != "Bearer {token}") {{ return 401 '{{"error":"no token"}}\\n'; }}
      return 200 '{{"hello":"from the vendor"}}\\n';
    }}
  }}
}}
"""
    )
    proc = subprocess.Popen(
        [exe, "-p", str(workdir), "-c", str(cfg), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_port(port)
    return Peer(proc, port, workdir)


def access_log(peer: Peer, count: int, timeout: float = 30.0) -> list[str]:
    """The first ``count`` lines of nginx's access log, once it has them (nginx writes a
    line when the request ends, which may be a moment after the client has its answer)."""
    path = peer.workdir / "access.log"
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        assert time.monotonic() < deadline, f"access.log has {lines}"
        time.sleep(0.05)


class Recorder:
    """A plain TCP listener that counts the connections it accepts; each one is handled by
    ``mode``: ``hold`` (read until the client closes), ``echo``, ``silent`` (never answers)
    or ``flood`` (sends without end). ``echo`` closes once it has echoed ``echo_bytes``."""

    def __init__(self, mode: str = "hold", echo_bytes: int = 0) -> None:
        self.echo_bytes = echo_bytes
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.accepted = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._clients.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.mode == "flood":
                chunk = b"x" * 65536
                while not self._stop.is_set():
                    conn.sendall(chunk)
            elif self.mode == "echo":
                echoed = 0
                while echoed < self.echo_bytes and (data := conn.recv(65536)):
                    conn.sendall(data)
                    echoed += len(data)
                conn.close()
            else:
                while conn.recv(65536):
                    pass
        except OSError:
            pass

    def count_when_settled(self, expected: int, timeout: float = 60.0) -> int:
        """Wait until ``expected`` connections are accepted (or the timeout), then return
        how many were accepted in all: the backlog is drained first, so a connection the
        kernel completed but nobody accepted yet is counted too."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.accepted >= expected:
                    break
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(5)
        self.sock.setblocking(False)
        extra = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, OSError):
                break
            conn.close()
            extra += 1
        return self.accepted + extra

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        with self._lock:
            for c in self._clients:
                c.close()
