"""Rendering helpers shared by the commands: JSON for scripts, Rich for people."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout: stable key order, one document, trailing newline."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def console(stderr: bool = False) -> Any:
    """A Rich console (imported on first use: Rich costs tens of milliseconds to import)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)
