"""What a run ended with: the guest's exit code, or a :class:`Trap` saying which limit or
fault stopped it, in one line a user can act on.

Trap kinds (``Trap.kind``, stable strings for ``--json`` and scripts) and exit statuses:

    cpu_time, wall_time        a limit was reached              152, 142
    memory                     the module needs more memory at start than limits.memory  137
    output_limit               an output file (limits.output) or a captured stream grew past
                               its bound                                                 134
    interrupted                Ctrl-C                                                    130
    stack_overflow, unreachable, memory_out_of_bounds, integer_division_by_zero, ...
                               a wasm trap (wasmtime's trap code, lower case)            134
    invalid_exit_status        the guest called exit with a status outside 0..125        134
    error                      any other failure inside the guest's execution            134
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from motte._record import Record
from motte.errors import ExitStatus
from motte.keep import _limits

if TYPE_CHECKING:
    import wasmtime

    from motte.manifest import Limits

_STATUS = {
    _limits.CPU_TIME: ExitStatus.CPU_TIME,
    _limits.WALL_TIME: ExitStatus.WALL_TIME,
    "memory": ExitStatus.MEMORY_LIMIT,
    _limits.INTERRUPTED: ExitStatus.INTERRUPTED,
}

_TRAP_TEXT = {
    "stack_overflow": "stack overflow (recursion deeper than the 512 KiB wasm stack)",
    "unreachable": "unreachable instruction executed (the guest aborted)",
    "memory_out_of_bounds": "out-of-bounds memory access",
    "heap_misaligned": "misaligned memory access",
    "table_out_of_bounds": "out-of-bounds table access",
    "indirect_call_to_null": "indirect call to a null function",
    "bad_signature": "indirect call with the wrong signature",
    "integer_overflow": "integer overflow",
    "integer_division_by_zero": "integer division by zero",
    "bad_conversion_to_integer": "invalid conversion to integer",
}

#: A guest whose linear memory is above this share of its limit (or within one 64 KiB page)
#: when it fails is reported as nearly full. wasm's memory.grow reports a refusal to the
#: guest (malloc returns NULL) instead of trapping, and wasmtime's trap-on-grow-failure is
#: not reachable from its C API, so a memory bomb ends in a trap, an error exit or a spin,
#: and a memory that is nearly full is the evidence left. A refused request far below the
#: limit (one huge allocation) is not detected; the guest's own error then says so.
FULL_MEMORY_SHARE = 0.90
WASM_PAGE = 65536


class Trap(Record):
    """Why a guest did not finish on its own."""

    __slots__ = ("detail", "kind", "message")
    _uncompared = frozenset({"detail"})
    kind: str
    #: One line for a user: which limit or fault, and the figure when there is one.
    message: str
    #: wasmtime's own text (with the wasm backtrace), for MOTTE_DEBUG and --json.
    detail: str

    def __init__(self, kind: str, message: str, detail: str = "") -> None:
        self._set(kind=kind, message=message, detail=detail)

    @property
    def exit_status(self) -> int:
        return int(_STATUS.get(self.kind, ExitStatus.TRAP))


class RunResult(Record):
    """The outcome of one instance.

    ``exit_code`` is the guest's exit status (0..125), or None when ``trap`` stopped it;
    ``stdout``/``stderr`` hold captured output (when ``capture`` was asked for); ``memory``
    is the size of the guest's linear memory at the end in bytes (None for components).
    """

    __slots__ = (
        "cpu_time",
        "exit_code",
        "memory",
        "memory_limit",
        "stderr",
        "stdout",
        "trap",
        "wall_time",
    )
    exit_code: int | None
    trap: Trap | None
    stdout: bytes | None
    stderr: bytes | None
    wall_time: float
    cpu_time: float
    memory: int | None
    memory_limit: int

    def __init__(
        self,
        exit_code: int | None,
        trap: Trap | None,
        stdout: bytes | None = None,
        stderr: bytes | None = None,
        wall_time: float = 0.0,
        cpu_time: float = 0.0,
        memory: int | None = None,
        memory_limit: int = 0,
    ) -> None:
        self._set(
            exit_code=exit_code,
            trap=trap,
            stdout=stdout,
            stderr=stderr,
            wall_time=wall_time,
            cpu_time=cpu_time,
            memory=memory,
            memory_limit=memory_limit,
        )

    @property
    def status(self) -> int:
        """The process exit status ``motte run`` returns for this result."""
        if self.trap is not None:
            return self.trap.exit_status
        assert self.exit_code is not None
        return self.exit_code

    @property
    def memory_full(self) -> bool:
        """Whether the guest's memory had nearly reached limits.memory (see above)."""
        if self.memory is None or not self.memory_limit:
            return False
        slack = max(self.memory_limit * (1 - FULL_MEMORY_SHARE), WASM_PAGE)
        return self.memory > self.memory_limit - slack

    def memory_note(self) -> str | None:
        """A note to add when a guest failed with a full memory."""
        if not self.memory_full or (self.trap is None and self.exit_code == 0):
            return None
        used = (self.memory or 0) / 2**20
        limit = self.memory_limit / 2**20
        return (
            f"its memory was nearly full ({used:.1f} of {limit:g} MiB, limits.memory / "
            "--memory): an allocation was probably refused"
        )


def _seconds(value: float) -> str:
    return f"{value:g} s"


def limit_trap(kind: str, limits: Limits, detail: str = "") -> Trap:
    if kind == _limits.CPU_TIME:
        text = f"CPU time limit reached: {_seconds(limits.cpu_time)} (limits.cpu_time, --cpu-time)"
    elif kind == _limits.WALL_TIME:
        text = (
            f"wall-clock time limit reached: {_seconds(limits.wall_time)} "
            "(limits.wall_time, --wall-time)"
        )
    elif kind == _limits.OUTPUT_LIMIT:
        text = "captured output exceeded its bound"
    elif kind == _limits.INTERRUPTED:
        text = "interrupted"
    else:
        text = kind
    return Trap(kind, text, detail)


def innermost_cause(message: str) -> str:
    """The innermost cause in a wasmtime error message, on one line."""
    text = message.strip()
    if "Caused by:" in text:
        text = text.rsplit("Caused by:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].startswith("0:"):
        lines = lines[1:]
    return lines[-1] if lines else "unknown error"


def classify(error: BaseException, watch: _limits.Watch, limits: Limits) -> Trap:
    """Turn what wasmtime raised while the guest ran into a :class:`Trap`."""
    import wasmtime

    detail = str(error)
    if watch.stopped == _limits.OUTPUT_LIMIT and watch.output_hit is not None:
        name, bound, file = watch.output_hit
        size = f"{bound / 2**20:g} MiB"
        text = (
            f"output limit reached: more than {size} written to the {name} file (limits.output)"
            if file
            else f"captured output exceeded its bound: more than {size} on {name}"
        )
        return Trap(_limits.OUTPUT_LIMIT, text, detail)
    if watch.stopped is not None:
        return limit_trap(watch.stopped, limits, detail)
    if isinstance(error, wasmtime.Trap):
        code = error.trap_code
        if code is not None:
            kind = code.name.lower()
            return Trap(kind, _TRAP_TEXT.get(kind, kind.replace("_", " ")), detail)
        return Trap("error", innermost_cause(detail), detail)
    cause = innermost_cause(detail)
    if "exit with invalid exit status" in cause:
        return Trap("invalid_exit_status", "exited with a status outside 0..125", detail)
    return Trap("error", cause, detail)


def instantiation_trap(error: wasmtime.WasmtimeError, limits: Limits) -> Trap | None:
    """A Trap when instantiation failed because of limits.memory, else None."""
    cause = innermost_cause(str(error))
    if "exceeds memory limits" in cause:
        return Trap(
            "memory",
            f"the workload needs more memory at start than its limit of {limits.memory} MiB "
            "(limits.memory, --memory)",
            str(error),
        )
    return None
