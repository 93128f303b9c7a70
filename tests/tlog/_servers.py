"""Start `motte log serve` / `motte log witness serve` as real processes on 127.0.0.1."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_READY = re.compile(r"serving .* on (http://\S+)")


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    stderr: list[str] = field(default_factory=list)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a power cut of the process."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def start(args: Sequence[str], *, env_home: Path, timeout: float = 30.0) -> Served:
    """Run ``motte <args> --listen 127.0.0.1:0`` and wait for the address it prints."""
    env = dict(os.environ, MOTTE_HOME=str(env_home))
    proc = subprocess.Popen(
        [sys.executable, "-m", "motte", *args, "--listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
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
            lines.append(text)
            if m := _READY.search(text):
                served = Served(proc, m.group(1), lines)
                threading.Thread(target=_drain, args=(proc, lines), daemon=True).start()
                return served
    proc.kill()
    raise RuntimeError(f"motte {' '.join(args)} did not start: {lines}")


def _drain(proc: subprocess.Popen[bytes], lines: list[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line.decode(errors="replace").rstrip("\n"))
