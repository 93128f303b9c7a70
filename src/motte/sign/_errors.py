"""Errors of motte.sign, split by who is at fault.

Local: a key file that is missing, unreadable or of a refused type, a root that would be
signed below its threshold. Remote: an envelope or statement that does not parse, a
signature that does not verify, a root chain that is broken or expired, an artifact that
lacks the signatures its namespace requires.
"""

from __future__ import annotations

from motte.errors import (
    ConfigError,
    MotteError,
    NotFoundError,
    ParseError,
    UsageError,
    VerificationError,
)


class SignError(MotteError):
    """Base of every motte.sign error."""


class KeyFileError(SignError, ConfigError):
    """A key file that cannot be used: names the file and why."""


class KeyNotFoundError(SignError, NotFoundError):
    """A key name or path that does not exist."""


class SigningUsageError(SignError, UsageError):
    """The caller asked for something that cannot work (a threshold above the key count...)."""


class EnvelopeFormatError(SignError, ParseError):
    """A DSSE envelope, in-toto statement, predicate or root document that does not parse."""


class SignatureError(SignError, VerificationError):
    """A signature that does not verify, or too few valid signatures for a threshold."""


class TrustRootError(SignError, VerificationError):
    """A root chain that does not verify: wrong version order, threshold unmet, expired."""


class ArtifactVerificationError(SignError, VerificationError):
    """An artifact that fails ``motte verify``: names the check (``check``) that failed."""

    def __init__(self, check: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{check}: {message}", hint=hint)
        self.check = check


class ForkCheckUnavailableError(SignError, VerificationError):
    """A checkpoint that cannot be shown consistent with the last one seen (log unreachable).

    Denied by default: without the consistency proof a forked log would go unnoticed.
    """
