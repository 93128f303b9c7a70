"""Progress reporting for long transfers, injected so the library never decides how to draw.

Library code calls ``progress.task(description, total)`` and then ``advance(n)`` on what it
returns. :data:`NO_PROGRESS` draws nothing (tests, ``--json``, not a TTY);
:func:`rich_progress` draws a Rich bar on stderr.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol


class Progress(Protocol):
    def task(
        self, description: str, total: int
    ) -> contextlib.AbstractContextManager[Callable[[int], None]]: ...


class _NoProgress:
    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda n: None


NO_PROGRESS: Progress = _NoProgress()


class _RichProgress:
    def __init__(self, bar: Any) -> None:
        self._bar = bar

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        task_id = self._bar.add_task(description, total=total)
        try:
            yield lambda n: self._bar.advance(task_id, n)
        finally:
            self._bar.update(task_id, completed=total)


@contextlib.contextmanager
def rich_progress(enabled: bool) -> Iterator[Progress]:
    """A Rich progress display on stderr while the block runs, or NO_PROGRESS if not enabled."""
    if not enabled:
        yield NO_PROGRESS
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
    from rich.progress import Progress as RichBar

    bar = RichBar(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        yield _RichProgress(bar)
