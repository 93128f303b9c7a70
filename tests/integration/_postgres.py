"""A real PostgreSQL for tests: Debian's server, initdb'd in a temporary directory.

It listens on 127.0.0.1 (a free port) and on a Unix socket in its own directory, with
password authentication over TCP: tests connect as ``motte`` with the password from a
passfile (``PGPASSFILE``), exactly as a deployment would. PostgreSQL refuses to run as
root, so when the tests run as root (CI) the server runs as the ``postgres`` user that the
Debian package creates, via ``runuser``. ``fsync=off``: the tests kill processes, never the
machine, and the data directory is thrown away.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

USER = "motte"


def find_bindir() -> Path | None:
    """The newest installed server's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        self.bindir = bindir
        #: fsync as a deployment would (bench/store.py); tests throw the data away.
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="motte-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.logfile = self.root / "server.log"
        self.passfile = self.root / "pgpass"
        self.password = secrets.token_urlsafe(16)
        self.port = free_port()
        self._run_as = None
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: run it as the postgres user.
            try:
                self._run_as = pwd.getpwnam("postgres")
            except KeyError:
                self._run_as = pwd.getpwnam("nobody")
            os.chmod(self.root, 0o755)
        self.socket_dir.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._run_as is not None:
            for p in (self.socket_dir, pwfile):
                os.chown(p, self._run_as.pw_uid, self._run_as.pw_gid)
            os.chown(self.root, self._run_as.pw_uid, self._run_as.pw_gid)
        self._as_server(
            [
                str(bindir / "initdb"),
                "-D", str(self.data),
                "-U", USER,
                "--pwfile", str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E", "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )  # fmt: skip
        pwfile.unlink()
        self.passfile.write_text(f"127.0.0.1:{self.port}:*:{USER}:{self.password}\n")
        os.chmod(self.passfile, 0o600)

    def _as_server(
        self, argv: list[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        if self._run_as is not None:
            argv = ["runuser", "-u", self._run_as.pw_name, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=check, cwd=self.root)

    @property
    def options(self) -> str:
        unsafe = "" if self.durable else "-c fsync=off -c full_page_writes=off "
        return (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.socket_dir} {unsafe}"
            "-c max_connections=400 -c shared_buffers=128MB"
        )

    def start(self) -> None:
        r = self._as_server(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
             "-o", self.options, "-w", "-t", "60", "start"],
            check=False,
        )  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {r.stdout}{r.stderr}{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        self._as_server(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60",
             "stop"],
            check=False,
        )  # fmt: skip

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self) -> str:
        try:
            return self.logfile.read_text()[-2000:]
        except OSError:
            return ""

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run SQL over the Unix socket as the superuser; returns the output."""
        r = subprocess.run(
            [str(self.bindir / "psql"), "-h", str(self.socket_dir), "-p",
             str(self.port), "-U", USER, "-d", database, "-v", "ON_ERROR_STOP=1", "-At",
             "-c", sql],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {r.stderr.strip()}")
        return r.stdout

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> tuple[str, str]:
        name = "t_" + secrets.token_hex(6)
        self.psql(f"CREATE DATABASE {name}")
        return name, self.url(name)

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(RuntimeError):
            self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.psql("SELECT 1")
                return
            except RuntimeError:
                time.sleep(0.2)
        raise RuntimeError("PostgreSQL did not answer")

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_server() -> Iterator[tuple[PostgresServer, str]]:
    """A PostgreSQL of the test's own (to stop and start it), and a database URL on it
    whose password comes from the server's passfile (``passfile=``: not a password)."""
    import pytest

    from tests.conftest import require

    bindir = find_bindir()
    require(bindir is not None, "PostgreSQL server (scripts/system-deps.sh test: postgresql)")
    assert bindir is not None
    server = PostgresServer(bindir)
    try:
        server.start()
        _, url = server.create_database()
        yield server, f"{url}?passfile={server.passfile}"
    except RuntimeError as e:
        pytest.fail(str(e))
    finally:
        server.cleanup()
