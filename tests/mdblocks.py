r"""The command blocks of motte's Markdown docs, and how to run them as written.

A *command block* is a fenced code block whose info string is ``sh`` (the whole block is a
script) or ``console`` (a transcript: the lines after a ``$ `` prompt, with ``\``
continuations, are the script; the other lines are sample output, not compared, since
digests and times differ from run to run). The HTML comment on the line before it
(invisible when the page is rendered) says how the doc-test runs it::

    <!-- doctest: illustrative: needs an SEV-SNP machine -->   never run; the reason is required
    <!-- doctest: exit=1 -->                                   runs; must exit 1 (default: 0)
    <!-- doctest: background, ready=http://127.0.0.1:8440/health -->
                                                               started and left running until
                                                               the page is done; ``ready`` is an
                                                               http(s) URL that must answer, or
                                                               ``tcp:HOST:PORT`` that must accept
    <!-- doctest: timeout=120 -->                              seconds (default 60)

Options combine with commas. Every other code block that *looks* like a command (its first
word is ``motte``, ``make`` or ``.venv/bin/...``) must be a fenced ``sh`` or ``console``
block, so no command in the docs escapes the test by being indented or untagged.

This module only reads Markdown; tests/test_docs.py runs the blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*doctest:\s*(?P<body>.*?)\s*-->\s*$")
COMMAND_INFOS = ("sh", "console")
_COMMANDISH = re.compile(r"^\s*(\$\s+)?(motte|make|\.venv/bin/\S+)(\s|$)")


class DocError(Exception):
    """A doc's blocks break the convention above (the message names file and line)."""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    info: str
    text: str
    illustrative: str | None = None  # the reason, when never run
    background: bool = False
    ready: str | None = None
    exit: int = 0
    timeout: float = 60.0

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.info in COMMAND_INFOS and self.illustrative is None

    @property
    def script(self) -> str:
        """What bash runs: the block, or a transcript's prompted lines."""
        if self.info != "console":
            return self.text
        out: list[str] = []
        continued = False
        for line in self.text.splitlines():
            if continued:
                out.append(line)
            elif line.startswith("$ "):
                out.append(line[2:])
            else:
                continue
            continued = line.endswith("\\")
        return "\n".join(out) + "\n"


@dataclass
class _Options:
    illustrative: str | None = None
    background: bool = False
    ready: str | None = None
    exit: int = 0
    timeout: float = 60.0
    seen: set[str] = field(default_factory=set)


def _parse_directive(body: str, where: str) -> _Options:
    opts = _Options()
    if body.startswith("illustrative"):
        reason = body[len("illustrative") :].lstrip(":").strip()
        if not reason:
            raise DocError(f"{where}: 'illustrative' needs a reason (illustrative: why)")
        opts.illustrative = reason
        return opts
    for part in (p.strip() for p in body.split(",")):
        key, _, value = part.partition("=")
        if key == "background" and not value:
            opts.background = True
        elif key == "ready" and value:
            if not value.startswith(("http://", "https://", "tcp:")):
                raise DocError(f"{where}: ready={value!r}: an http(s) URL or tcp:HOST:PORT")
            opts.ready = value
        elif key == "exit" and value.isdigit():
            opts.exit = int(value)
        elif key == "timeout" and value.replace(".", "", 1).isdigit():
            opts.timeout = float(value)
        else:
            raise DocError(f"{where}: unknown doctest option {part!r}")
    if opts.background and opts.ready is None:
        raise DocError(f"{where}: a background block needs ready=... (what says it is up)")
    return opts


def read_blocks(path: Path) -> list[Block]:
    """Every code block of ``path`` (fenced or indented), with its doctest directive."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: tuple[_Options, int] | None = None
    i = 0
    prev_blank = True
    while i < len(lines):
        line = lines[i]
        where = f"{path.name}:{i + 1}"
        m = _DIRECTIVE.match(line)
        if m:
            pending = (_parse_directive(m.group("body"), where), i + 1)
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            mark = fence.group("fence")
            info = fence.group("info").strip().split(" ")[0]
            # A fence indented N spaces (inside a list item) takes up to N spaces off each
            # line of its content, as CommonMark does: a transcript's `$ ` and a heredoc's
            # terminator then start their lines, as the reader sees them.
            indent = len(fence.group("indent"))
            start = i
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(mark):
                line = lines[i]
                body.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
                i += 1
            i += 1  # the closing fence
            opts = pending[0] if pending else _Options()
            if pending and pending[1] != start:
                raise DocError(
                    f"{path.name}:{pending[1]}: a doctest directive must sit on the "
                    "line right before its block"
                )
            pending = None
            blocks.append(
                Block(
                    path,
                    start + 1,
                    info,
                    "\n".join(body) + "\n",
                    opts.illustrative,
                    opts.background,
                    opts.ready,
                    opts.exit,
                    opts.timeout,
                )
            )
            prev_blank = False
            continue
        if prev_blank and line.startswith("    ") and line.strip():
            start = i
            body = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            text = "\n".join(body).rstrip() + "\n"
            blocks.append(Block(path, start + 1, "", text, illustrative="indented"))
            prev_blank = False
            continue
        if pending and line.strip():
            raise DocError(
                f"{path.name}:{pending[1]}: a doctest directive must sit on the line "
                "right before its block"
            )
        prev_blank = not line.strip()
        i += 1
    return blocks


def check_convention(blocks: list[Block]) -> list[str]:
    """Problems: command-like blocks that are not fenced ``sh`` (so the test would miss them),
    and directives on blocks that are not ``sh``."""
    problems = []
    for b in blocks:
        first = next((ln for ln in b.text.splitlines() if ln.strip()), "")
        if b.info not in COMMAND_INFOS and _COMMANDISH.match(first):
            problems.append(
                f"{b.where}: a command block that is not a fenced ```sh or ```console block: "
                "the doc-test cannot run it (fence it, and mark it illustrative if it cannot run)"
            )
        if b.info not in COMMAND_INFOS and b.illustrative not in (None, "indented"):
            problems.append(f"{b.where}: a doctest directive on a block that is not a command")
    return problems
