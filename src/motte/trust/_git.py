"""Running git for a rebuild and for checking that a recorded commit exists at its source.

git runs with a scrubbed environment (no system or global config, no credential helpers, no
prompts, only the ``file``, ``git``, ``http``, ``https`` and ``ssh`` protocols: ``ext::``
would run commands), in its own process group, killed at its time limit. Its failures are
reported by their first ``fatal:`` line: git's last lines are often generic advice ("Please
make sure you have the correct access rights").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from motte.fsutil import atomic_write_bytes
from motte.home import motte_home
from motte.sign import SLSA_PROVENANCE, Provenance
from motte.trust._errors import RebuildError
from motte.trust._evidence import EXISTS, MISSING, UNCHECKED, FoundStatement, SourceCheck
from motte.trust._predicates import MAX_REASON_CHARS
from motte.trust._verdict import rfc3339

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Protocols git may use to fetch the source (``ext::`` would run commands).
GIT_PROTOCOLS = "file:git:http:https:ssh"
GIT_TIMEOUT = 600.0
#: How long ``motte trust`` waits for a source to say whether it has a commit.
SOURCE_CHECK_TIMEOUT = 30.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def git_env(work: Path, epoch: str | None = None) -> dict[str, str]:
    """The whole environment a rebuild's git and build command see: nothing of the caller's."""
    env = {
        "PATH": SAFE_PATH,
        "HOME": str(work / "home"),
        "TMPDIR": str(work / "tmp"),
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": GIT_PROTOCOLS,
    }
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = epoch
    return env


def one_line(text: str) -> str:
    """``text`` as one printable line of at most MAX_REASON_CHARS characters."""
    line = _CONTROL.sub(" ", text).strip()
    if len(line) > MAX_REASON_CHARS:
        line = line[: MAX_REASON_CHARS - 1] + "…"
    return line


def first_fatal_line(stderr: str) -> str:
    """The line that says why git failed: its first ``fatal:``, else ``error:``, else last."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for prefix in ("fatal:", "error:"):
        for ln in lines:
            if ln.startswith(prefix):
                return one_line(ln)
    return one_line(lines[-1]) if lines else "(no output)"


class GitFailed(Exception):
    """git exited non-zero or ran out of time; ``reason`` is one line saying which and why."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


def run_git(
    args: list[str], work: Path, what: str, *, cwd: Path | None = None, timeout: float = GIT_TIMEOUT
) -> str:
    """git's stdout; raises :class:`GitFailed` naming ``what`` (e.g. "clone") and why."""
    git = shutil.which("git", path=SAFE_PATH)
    if git is None:
        raise RebuildError("git is not installed: rebuilds and source checks run git")
    proc = subprocess.Popen(
        [git, *args],
        cwd=cwd,
        env=git_env(work),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: a timeout ends its helpers too
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise GitFailed(f"{what}: git did not finish in {timeout:g} s", timed_out=True) from None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    if proc.returncode != 0:
        detail = first_fatal_line(err.decode("utf-8", "replace"))
        raise GitFailed(f"{what}: git exited with status {proc.returncode}: {detail}")
    return out.decode("utf-8", "replace").strip()


# -- does the source have the commit? --------------------------------------------------------

#: Schemes whose sources can be asked without credentials (ssh always needs a key).
_ASKABLE = ("file://", "https://", "http://", "git://")
#: git's words for "I do not have that commit" (as opposed to "I cannot be reached").
_MISSING_SIGNS = ("not our ref", "couldn't find remote ref", "reference is not a tree")


def _fetchable(source: str) -> str | None:
    """The URL git should fetch from, or None when motte will not ask this source."""
    url = source.removeprefix("git+")
    return url if url.startswith(_ASKABLE) else None


def check_commit(source: str, commit: str, *, timeout: float = SOURCE_CHECK_TIMEOUT) -> SourceCheck:
    """Ask ``source`` for exactly ``commit`` (one commit, no files), without credentials.

    A fetch of the commit by its id, at depth 1 and without trees where the server allows a
    filter, into a throwaway repository: the same question a rebuild's checkout asks, without
    its cost. git's protocol v2 lets a client ask for any commit the source has; a server that
    answers "not our ref" does not have it. A source that cannot be reached, needs
    credentials or will not answer the question is UNCHECKED, never EXISTS.
    """
    url = _fetchable(source)
    if url is None:
        scheme = source.removeprefix("git+").split(":", 1)[0]
        return SourceCheck(
            source,
            commit,
            UNCHECKED,
            f"motte asks only file, http, https and git sources without credentials, not {scheme}",
        )
    work = Path(tempfile.mkdtemp(prefix="motte-source-"))
    try:
        for d in ("home", "tmp"):
            (work / d).mkdir()
        repo = work / "probe.git"
        run_git(["init", "--quiet", "--bare", str(repo)], work, "init")
        run_git(
            [
                "-c",
                "protocol.version=2",
                "-c",
                "credential.helper=",
                "fetch",
                "--quiet",
                "--no-tags",
                "--depth=1",
                "--filter=tree:0",
                "--",
                url,
                commit,
            ],
            work,
            "fetch",
            cwd=repo,
            timeout=timeout,
        )
        got = run_git(["rev-parse", "--verify", "FETCH_HEAD^{commit}"], work, "rev-parse", cwd=repo)
    except RebuildError as e:  # git is not installed here
        return SourceCheck(source, commit, UNCHECKED, e.message)
    except GitFailed as e:
        if not e.timed_out and any(sign in e.reason for sign in _MISSING_SIGNS):
            return SourceCheck(source, commit, MISSING, e.reason)
        return SourceCheck(source, commit, UNCHECKED, e.reason)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if got != commit:
        return SourceCheck(source, commit, UNCHECKED, f"the source answered with commit {got}")
    return SourceCheck(source, commit, EXISTS, "the source has it")


def sources_dir() -> Path:
    """Where this installation remembers commits it has seen a source have."""
    return motte_home() / "trust" / "sources"


def _memo(source: str, commit: str) -> Path:
    key = hashlib.sha256(f"{source}\0{commit}".encode()).hexdigest()[:32]
    return sources_dir() / f"{key}.json"


def _remembered(source: str, commit: str) -> str | None:
    """When this installation saw ``source`` have ``commit``, or None."""
    try:
        doc = json.loads(_memo(source, commit).read_bytes())
    except (OSError, ValueError):
        return None  # never asked, or a damaged file: ask again
    if not isinstance(doc, dict) or (doc.get("source"), doc.get("commit")) != (source, commit):
        return None
    when = doc.get("checked")
    return when if isinstance(when, str) else None


def _remember(source: str, commit: str, now: dt.datetime) -> None:
    doc = {"source": source, "commit": commit, "checked": rfc3339(now)}
    with contextlib.suppress(OSError):  # a memory that cannot be written only asks again
        atomic_write_bytes(_memo(source, commit), json.dumps(doc, sort_keys=True).encode())


def check_sources(
    statements: Iterable[FoundStatement], digest: str, now: dt.datetime
) -> tuple[SourceCheck, ...]:
    """Ask each source that counted provenance about ``digest`` names for its commit, once.

    A commit once seen at its source is remembered (``MOTTE_HOME/trust/sources/``) and not
    asked for again: a judgement, and every ``motte run`` under a trust policy, would
    otherwise wait for the source each time. Only "exists" is remembered; a missing commit
    or a source that could not be asked is asked again next time.
    """
    asked: dict[tuple[str, str], SourceCheck] = {}
    for s in statements:
        if s.predicate_type != SLSA_PROVENANCE or not s.usable or not s.about(digest):
            continue
        p = Provenance.from_dict(s.predicate, "provenance")
        key = (p.source, p.commit)
        if key in asked:
            continue
        when = _remembered(*key)
        if when is not None:
            asked[key] = SourceCheck(*key, EXISTS, f"the source had it when asked on {when[:10]}")
            continue
        asked[key] = check_commit(*key)
        if asked[key].status == EXISTS:
            _remember(*key, now)
    return tuple(asked.values())
