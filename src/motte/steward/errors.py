"""Errors of the Steward and of its clients (the Keep asking, the client connecting).

Split by who is at fault, as elsewhere in motte: :class:`StewardConfigError` is the
operator's own files; :class:`AttestationRefusedError` is the Steward saying no to a Keep
(with every failed rule); :class:`KeepIdentityError` is a client refusing what a Keep
presented over TLS.
"""

from __future__ import annotations

from motte.errors import (
    ConfigError,
    MotteError,
    NotFoundError,
    RemoteError,
    UsageError,
    VerificationError,
)


class StewardError(MotteError):
    """Base of every Steward error."""


class StewardConfigError(StewardError, ConfigError):
    """The Steward's config, CA or policy is missing, malformed or inconsistent."""


class StewardNotInitialisedError(StewardError, NotFoundError):
    """``motte steward serve`` before ``motte steward init``."""


class StewardUnreachableError(StewardError, RemoteError):
    """The Steward could not be reached, or answered outside the protocol."""


class AttestationRefusedError(StewardError, VerificationError):
    """The Steward refused a Keep's attestation; ``reasons`` lists every failed rule."""

    def __init__(
        self,
        message: str,
        *,
        reasons: tuple[str, ...] = (),
        audit_id: int | None = None,
        problem: dict[str, object] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.reasons = reasons
        self.audit_id = audit_id
        self.problem = problem or {}


class KeepIdentityError(StewardError, VerificationError):
    """What a Keep presented (its TLS chain, its certificate's claims) is not what was expected."""


class SecretError(StewardError):
    """Base of the secret store's errors."""


class SecretKeyError(SecretError, ConfigError):
    """The master key is missing, unreadable, malformed, or not the one the store uses."""


class SecretNotFoundError(SecretError, NotFoundError):
    """No such secret (or version), or it was removed."""


class SecretUsageError(SecretError, UsageError):
    """A secret command asked for something that cannot be (a bad name, an empty value)."""


class ReleasePolicyError(SecretError, ConfigError):
    """A release policy does not parse or says something impossible; names file and line."""


class SecretRefusedError(SecretError, VerificationError):
    """The Steward refused to release secrets to this Keep; ``reasons`` lists every one."""

    def __init__(
        self,
        message: str,
        *,
        reasons: tuple[str, ...] = (),
        audit_id: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.reasons = reasons
        self.audit_id = audit_id


class AdminAuthError(SecretError, VerificationError):
    """The admin API refused the caller (no or wrong token, no client certificate)."""


class VolumeRefusedError(SecretRefusedError):
    """The Steward refused a Keep the keys of its sealed volumes; ``reasons`` lists each."""


class VolumeCommitError(StewardError, RemoteError):
    """The Steward did not record a volume snapshot (``latest``: the version it records,
    when it said; ``status``: its HTTP status, 409 when another version is recorded)."""

    def __init__(
        self, message: str, *, latest: int | None = None, status: int = 0, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.latest = latest
        self.status = status
