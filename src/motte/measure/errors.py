"""Errors of ``motte measure``: the operator's own inputs, so exit status 2 (usage).

A firmware file without the metadata a launch needs, a kernel the firmware cannot measure,
a TDX option that depends on a QEMU or edk2 version and was not given: each is refused with
one line naming what is missing and where, never measured with a guess.
"""

from __future__ import annotations

from motte.errors import ExitStatus, MotteError


class MeasureError(MotteError):
    """An input ``motte measure`` cannot compute a reference value from."""

    exit_status = ExitStatus.USAGE


class FirmwareError(MeasureError):
    """A firmware image that is malformed or lacks the metadata the launch needs."""
