"""The docs run as written: every ```sh block of README.md and docs/*.md is either run here,
in order, page by page, in a scratch copy of the examples with its own MOTTE_HOME, or marked
illustrative with the reason (the convention is in tests/mdblocks.py).

A page's blocks share one shell's state as a reader's terminal would: what one block
exports or the directory it changes to holds for the next. Background blocks (a Steward, a
registry, a log server) are started as the page says, waited for, and stopped when the page
is done.

The pages run one after another and their servers listen on fixed ports (a reader pastes
the same addresses). A page stops its servers before the next starts, but a new page takes
ports no other page uses (8443 and 8450 are shared from before: README.md and power.md,
power.md and secrets.md), all below 32768, where Linux's ephemeral ports begin:

    README.md                 5000 registry, 8440 Steward, 8443 Keep
    docs/power.md             13490-13495 UPS simulators, 8450 Steward, 8443 Keep
    docs/transparency-log.md  8570 log, 8571 witness
    docs/supply-chain.md      5100 registry, 8500 log
    docs/console.md           8580 console
    docs/sealed-state.md      8460 Steward, 8445 Keep (examples/counter)
    docs/secrets.md           8450 Steward, 8444 Keep (examples/secret-db)
    docs/keeps.md             8441 Steward, 8446 Keep (its quick start), 8447 Keep (no Steward)
    docs/scale.md             5150 PostgreSQL, 8540-8541 Stewards, 8542 HAProxy, 8543 Keep,
                              8510-8511 log sequencer and standby, 8512 static tiles

A page that reads the public samples in ../shared/testdata (beside the checkout, as in the
reader's tree) is skipped, saying so, where they are absent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_TESTDATA
from tests.mdblocks import Block, DocError, check_convention, read_blocks

#: The pages held to the convention: every page of docs/.
PAGES = [
    REPO / "README.md",
    *(
        REPO / "docs" / f"{name}.md"
        for name in (
            "power",
            "index",
            "development",
            "transparency-log",
            "supply-chain",
            "trust",
            "attestation",
            "attestation-intel",
            "measure",
            "console",
            "scale",
            "secrets",
            "sealed-state",
            "keeps",
            "running",
            "performance",
        )
    ),
]


def test_every_doc_page_is_held_to_it() -> None:
    """A new page of docs/ is run as written (or says why not) from the start."""
    outside = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p not in PAGES]
    assert not outside, f"add to PAGES in tests/test_docs.py: {', '.join(outside)}"


def _blocks(page: Path) -> list[Block]:
    try:
        return read_blocks(page)
    except DocError as e:
        pytest.fail(str(e))


#: Linux hands out ports from 32768 up (ip_local_port_range) to port-0 servers and outgoing
#: connections, so a page's fixed port up there can be taken by another test at any moment.
EPHEMERAL_PORTS_START = 32768


def _ready_address(spec: str) -> tuple[str, int]:
    """The host and port a block's ready= waits on (tcp:HOST:PORT or an http(s) URL)."""
    if spec.startswith("tcp:"):
        host, _, port = spec[4:].rpartition(":")
        return host, int(port)
    url = urllib.parse.urlsplit(spec)
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_page_listens_below_the_ephemeral_ports(page: Path) -> None:
    high = [
        f"{b.where}: port {port}"
        for b in _blocks(page)
        if b.ready and (port := _ready_address(b.ready)[1]) >= EPHEMERAL_PORTS_START
    ]
    assert not high, "\n".join(high)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_block_is_runnable_or_says_why_not(page: Path) -> None:
    problems = check_convention(_blocks(page))
    assert not problems, "\n".join(problems)


def _ready(spec: str) -> bool:
    if spec.startswith("tcp:"):
        with contextlib.suppress(OSError), socket.create_connection(_ready_address(spec), 1):
            return True
        return False
    try:
        with urllib.request.urlopen(spec, timeout=2) as r:
            return r.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except (OSError, ValueError):
        return False


class Page:
    """One page's blocks run in one scratch directory, in order."""

    def __init__(self, tmp: Path) -> None:
        self.cwd = tmp / "work"
        self.cwd.mkdir()
        # The reader's checkout: its examples (copied: commands may write there) and its .venv.
        (self.cwd / ".venv").symlink_to(Path(sys.executable).parents[1])
        shutil.copytree(
            REPO / "examples",
            self.cwd / "examples",
            ignore=shutil.ignore_patterns("*.o", "__pycache__"),
        )
        # The public samples sit beside the checkout (../shared/testdata), as in the reader's.
        if SHARED_TESTDATA.is_dir():
            (tmp / "shared").mkdir()
            (tmp / "shared" / "testdata").symlink_to(SHARED_TESTDATA)
        bindir = Path(sys.executable).parent
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("MOTTE_", "PYTEST_"))}
        self.env.update(
            MOTTE_HOME=str(tmp / "home"),
            HOME=str(tmp / "user"),
            PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            NO_COLOR="1",
            COLUMNS="100",
        )
        (tmp / "user").mkdir()
        self.state = tmp / "shell-state.sh"
        self.background: list[tuple[Block, subprocess.Popen[bytes], Path]] = []

    def _script(self, block: Block, *, keep_state: bool) -> list[str]:
        """bash with the page's shell state loaded before the block (and saved after it)."""
        state = str(self.state)
        save = (
            f'trap \'rc=$?; {{ export -p; printf "cd %q\\n" "$PWD"; }} > {state!r}; '
            "exit $rc' EXIT\n"
            if keep_state
            else ""
        )
        head = f"if [ -f {state!r} ]; then . {state!r}; fi\n{save}set -e -o pipefail\n"
        return ["bash", "-c", head + block.script]

    def run(self, block: Block) -> None:
        if block.background:
            self._start(block)
            return
        r = subprocess.run(
            self._script(block, keep_state=True),
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=block.timeout,
        )
        assert r.returncode == block.exit, (
            f"{block.where}: exit {r.returncode}, the doc expects {block.exit}\n"
            f"{block.script}--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
        )

    def _start(self, block: Block) -> None:
        assert block.ready is not None
        if _ready(block.ready):  # the page's server would not be the one that answers
            pytest.fail(
                f"{block.where}: {block.ready} answers before the block starts: another "
                "server holds its port (the docs use fixed ports; stop it and run again)"
            )
        log = self.cwd / f".background-{block.line}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self._script(block, keep_state=False),
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append((block, proc, log))
        deadline = time.monotonic() + block.timeout
        while not _ready(block.ready):
            # A block that ends in `cmd &` exits 0 at once and leaves its server running.
            if proc.poll() not in (None, 0):
                pytest.fail(
                    f"{block.where}: the background command exited {proc.returncode} before "
                    f"{block.ready} answered\n{block.script}{log.read_text()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"{block.where}: {block.ready} did not answer in {block.timeout} s")
            time.sleep(0.1)

    def stop(self) -> None:
        for _block, proc, _log in reversed(self.background):
            # The whole process group: a block's `cmd &` outlives the bash that started it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextlib.contextmanager
def _page(tmp: Path) -> Iterator[Page]:
    page = Page(tmp)
    try:
        yield page
    finally:
        page.stop()


RUNNABLE = [p for p in PAGES if any(b.runs for b in read_blocks(p))]


@pytest.mark.integration
# Pages listen on fixed ports (above): under pytest-xdist they all run in one worker, in turn.
@pytest.mark.xdist_group("doc-pages")
@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.name)
def test_the_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    if "../shared/testdata" in page.read_text() and not SHARED_TESTDATA.is_dir():
        pytest.skip(f"{page.name} reads the public samples: {SHARED_TESTDATA} is absent")
    with _page(tmp_path) as runner:
        for block in _blocks(page):
            if block.runs:
                runner.run(block)


@pytest.mark.integration
def test_the_demo_runs(tmp_path: Path) -> None:
    """What `make demo` runs once motte is installed: every step checks its own exit status."""
    bindir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTTE_")}
    env.update(
        MOTTE=str(bindir / "motte"),
        PYTHON=sys.executable,
        MOTTE_HOME=str(tmp_path / "home"),
        TMPDIR=str(tmp_path),
    )
    r = subprocess.run(
        ["sh", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "Done." in r.stdout
