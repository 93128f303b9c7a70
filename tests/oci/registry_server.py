"""Start Debian's docker-registry (distribution 2.8) on 127.0.0.1 for a test, and stop it.

``run_registry`` writes a config (filesystem storage in a temp dir, optional htpasswd or token
auth), starts ``/usr/bin/docker-registry serve``, waits for ``/v2/`` and yields its address.
``ReferrersProxy`` puts the OCI 1.1 referrers API in front of it: distribution 2.8 has none,
and no registry that has one is packaged here, so the proxy implements the registry side of
that one endpoint (and the ``OCI-Subject`` header) over the real registry's storage.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.conftest import require

REGISTRY_BIN = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    storage: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob (to tamper with it in tests)."""
        hexpart = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for an htpasswd file (distribution accepts only bcrypt)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # Python < 3.13; libxcrypt does bcrypt
        except ImportError:
            crypt = None  # type: ignore[assignment]
    if crypt is not None and crypt.METHOD_BLOWFISH in crypt.methods:
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    try:
        import bcrypt
    except ImportError:
        require(False, "a bcrypt implementation for htpasswd (Python's crypt or pip's bcrypt)")
    return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode())


@contextlib.contextmanager
def run_registry(tmp: Path, *, auth_yaml: str = "") -> Iterator[Registry]:
    require(
        Path(REGISTRY_BIN).exists() or shutil.which("docker-registry") is not None,
        "docker-registry (apt-get install docker-registry)",
    )
    binary = REGISTRY_BIN if Path(REGISTRY_BIN).exists() else str(shutil.which("docker-registry"))
    port = free_port()
    storage = tmp / "registry-data"
    storage.mkdir(parents=True, exist_ok=True)
    config = tmp / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth_yaml
    )
    log = tmp / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
                if r.status_code in (200, 401):
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}", storage, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ReferrersProxy:
    """The referrers API (distribution-spec v1.1) in front of a registry that lacks it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.referrers: dict[tuple[str, str], list[dict[str, object]]] = {}
        self.requests: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def _handle(self) -> None:
                proxy.requests.append((self.command, self.path))
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path.split("?")[0].split("/")
                if self.command == "GET" and "referrers" in parts:
                    i = parts.index("referrers")
                    repo, digest = "/".join(parts[2:i]), parts[i + 1]
                    index = {
                        "schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": proxy.referrers.get((repo, digest), []),
                    }
                    self._send(
                        200, {"Content-Type": index["mediaType"]}, json.dumps(index).encode()
                    )
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
                r = httpx.request(
                    self.command, proxy.upstream + self.path, headers=headers, content=body
                )
                out = {
                    k: v
                    for k, v in r.headers.items()
                    if k.lower()
                    not in ("content-length", "transfer-encoding", "connection", "date", "server")
                }
                if "location" in out:
                    out["location"] = out["location"].replace(proxy.upstream, proxy.url)
                if self.command == "PUT" and "/manifests/" in self.path and r.status_code == 201:
                    doc = json.loads(body)
                    subject = doc.get("subject")
                    if subject:
                        i = parts.index("manifests")
                        repo = "/".join(parts[2:i])
                        entry = {
                            "mediaType": doc.get("mediaType"),
                            "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                            "size": len(body),
                            "artifactType": doc.get("artifactType") or doc["config"]["mediaType"],
                            "annotations": doc.get("annotations", {}),
                        }
                        proxy.referrers.setdefault((repo, subject["digest"]), []).append(entry)
                        out["OCI-Subject"] = subject["digest"]
                self._send(
                    r.status_code,
                    out,
                    b"" if self.command == "HEAD" else r.content,
                    length=len(r.content),
                )

            def _send(
                self, status: int, headers: dict[str, str], body: bytes, length: int | None = None
            ) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_PATCH = do_HEAD = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ReferrersProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
