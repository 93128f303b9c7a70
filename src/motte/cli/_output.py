"""Rendering helpers shared by the commands: JSON for scripts, Rich for people, and the one
format of an error."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: `motte --help` does without importing typing
if TYPE_CHECKING:
    from typing import Any

    from motte.errors import MotteError


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout: stable key order, one document, trailing newline."""
    import json

    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def console(stderr: bool = False) -> Any:
    """A Rich console (imported on first use: Rich costs tens of milliseconds to import)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def report_error(err: MotteError) -> None:
    """The one format for a user-facing failure: one line, then a hint when there is one."""
    print(f"motte: error: {err.message}", file=sys.stderr)
    if err.hint:
        print(f"  hint: {err.hint}", file=sys.stderr)
