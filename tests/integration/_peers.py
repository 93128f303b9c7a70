"""Real peers for the store's integration tests: motte servers as processes, HAProxy, nginx.

Each binds 127.0.0.1 on a free port, runs in the foreground as a child of the test, and is
stopped by the test (SIGKILL where the test is about a crash).
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration._postgres import free_port


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    url: str = ""
    lines: list[str] = field(default_factory=list)

    def kill(self) -> None:
        """SIGKILL: no handler runs, as when a machine loses the process."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_for_line(self, pattern: str, timeout: float = 60.0) -> str:
        """Wait until the process has printed a line matching ``pattern`` (stderr)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if re.search(pattern, line):
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in {self.lines}")


def start_motte(
    args: Sequence[str], *, home: Path, ready: str, env: dict[str, str] | None = None
) -> Process:
    """``motte <args> --listen 127.0.0.1:0``; waits for the URL it prints (``ready`` has one
    group: the URL)."""
    environ = dict(os.environ, MOTTE_HOME=str(home), **(env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "motte", *args, "--listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environ,
    )
    assert proc.stderr is not None
    served = Process(proc)
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + 60
    buf = b""
    while time.monotonic() < deadline:
        if not sel.select(timeout=0.2):
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.split(b"\n")
        for line in done:
            text = line.decode(errors="replace")
            served.lines.append(text)
            if m := re.search(ready, text):
                served.url = m.group(1)
                threading.Thread(target=_drain, args=(served,), daemon=True).start()
                return served
    proc.kill()
    raise RuntimeError(f"motte {' '.join(args)} did not start: {served.lines}")


def _drain(served: Process) -> None:
    assert served.proc.stderr is not None
    for line in served.proc.stderr:
        served.lines.append(line.decode(errors="replace").rstrip("\n"))


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def haproxy(workdir: Path, backends: Sequence[str]) -> tuple[Process, str]:
    """HAProxy in front of ``backends`` (``host:port``), health-checking ``GET /health``."""
    exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
    port = free_port()
    servers = "\n".join(
        f"  server r{i} {b} check inter 300ms fall 2 rise 2" for i, b in enumerate(backends)
    )
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(
        f"""global
  maxconn 512

defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  # A replica that refuses the connection (it died): try the other. Requests that reached
  # a replica are never replayed by HAProxy: the client decides.
  retries 3
  option redispatch
  retry-on conn-failure

frontend steward
  bind 127.0.0.1:{port}
  default_backend replicas

backend replicas
  balance roundrobin
  option httpchk GET /health
  http-check expect status 200
{servers}
"""
    )
    proc = subprocess.Popen(
        [exe, "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_port(port)
    return Process(proc, f"http://127.0.0.1:{port}"), f"http://127.0.0.1:{port}"


def nginx(workdir: Path, root: Path) -> tuple[Process, str]:
    """nginx serving ``root`` as a static tlog-tiles log."""
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers read root's tmp dirs
    temps = "".join(
        f"  {name}_temp_path {workdir / name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    cfg = workdir / "nginx.conf"
    cfg.write_text(
        f"""{user}worker_processes 1;
error_log {workdir}/error.log;
pid {workdir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
{temps}  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location = /checkpoint {{ add_header Cache-Control "no-cache"; }}
    location /tile/ {{ add_header Cache-Control "public, max-age=31536000, immutable"; }}
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
    return Process(proc, f"http://127.0.0.1:{port}"), f"http://127.0.0.1:{port}"
