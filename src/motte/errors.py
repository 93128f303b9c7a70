"""The one error family of motte.

Every failure a user can cause or meet (bad input, a refused verdict, a peer that broke its
protocol, a missing file) is a :class:`MotteError`: a one-line message saying what went wrong
and where, an optional hint saying how to fix it, and the exit status the CLI returns. Any
other exception escaping the library is a bug.

Subsystems derive their own base from :class:`MotteError` and split it by who is at fault,
as h11 does: a *local* error means the caller misused something (a wrong option, a bad
manifest), a *remote* error means the evidence, the package or the peer is bad.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit statuses shared by every command (``motte run`` passes the guest's through)."""

    OK = 0
    #: A check said no: a verdict rejected, a signature or proof failed, malformed evidence.
    FAILURE = 1
    #: The command line itself was wrong.
    USAGE = 2
    #: ``motte run``: the guest trapped (unreachable, stack overflow, a limit); see motte.keep.
    TRAP = 134
    #: ``motte run``: motte could not start the workload (bad manifest, missing module, ...).
    RUN_ERROR = 125
    #: ``motte run``: the guest reached a limit (docs/running.md). Guests exit with 0..125
    #: only, so these never collide with a guest's own status.
    MEMORY_LIMIT = 137  # 128 + SIGKILL, as the OOM killer
    WALL_TIME = 142  # 128 + SIGALRM
    CPU_TIME = 152  # 128 + SIGXCPU
    #: A bug in motte: an exception that is not a MotteError.
    INTERNAL = 70
    INTERRUPTED = 130


class MotteError(Exception):
    """Base of every error motte reports to a user.

    ``message`` is one line naming what and where; ``hint`` says what to do about it.
    """

    exit_status: ExitStatus = ExitStatus.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(MotteError):
    """The caller asked for something that cannot work (conflicting or missing options)."""

    exit_status = ExitStatus.USAGE


class ConfigError(MotteError):
    """A configuration file (manifest, policy, plan) is malformed or inconsistent."""


class ParseError(MotteError):
    """Bytes or text that do not parse: names the field and the offset or line."""


class VerificationError(MotteError):
    """A signature, certificate chain, digest or proof did not verify."""


class NotFoundError(MotteError):
    """A file, reference, key or entry that was asked for does not exist."""


class RemoteError(MotteError):
    """A peer (service, registry, UPS server) broke its protocol or could not be reached."""
