"""Errors of the NUT protocol, split by who is at fault (as h11 and python-tuf do).

- :class:`LocalProtocolError`: the caller misused the NUT core (a request that cannot be
  written, a request sent after LOGOUT, a name with a space in it). A bug or bad input on
  our side; nothing was sent.
- :class:`RemoteProtocolError`: the server broke the NUT protocol (a reply that does not
  parse, a LIST without its END line, an over-long line). The connection is unusable.
- :class:`NutServerError` and one subclass per NUT ``ERR`` code: the server understood the
  request and refused it. These are answers, not broken connections.
- :class:`NutConnectionError`: the server could not be reached, went away, or missed its
  deadline.

All of them are :class:`NutError`; :mod:`motte.power` builds on this package and catches it.
"""

from __future__ import annotations

from motte.errors import MotteError, RemoteError


class NutError(MotteError):
    """Base of every error of the NUT protocol package."""


class LocalProtocolError(NutError):
    """The caller asked the NUT core for something the protocol cannot express."""


class RemoteProtocolError(NutError, RemoteError):
    """The NUT peer sent bytes that break the protocol; the connection must be closed."""


class NutConnectionError(NutError, RemoteError):
    """A NUT server could not be reached, timed out, or closed the connection."""


class NutServerError(NutError, RemoteError):
    """The NUT server answered ``ERR <code> [extra]``.

    Each code in the protocol has its own subclass (``except AccessDeniedError``); a code this
    version does not know arrives as this base class with ``code`` set, so a newer server never
    crashes an older client.
    """

    code: str = ""
    default_hint: str | None = None

    def __init__(self, code: str, extra: str = "", *, request: str = "") -> None:
        where = f" to {request!r}" if request else ""
        detail = f" ({extra})" if extra else ""
        super().__init__(f"NUT server answered ERR {code}{detail}{where}", hint=self.default_hint)
        self.code = code
        self.extra = extra
        self.request = request


class AccessDeniedError(NutServerError):
    code = "ACCESS-DENIED"
    default_hint = "check the password and the user's rights in upsd.users (actions, upsmon role)"


class UnknownUpsError(NutServerError):
    code = "UNKNOWN-UPS"
    default_hint = "list the server's UPS names with `upsc -l HOST`"


class VarNotSupportedError(NutServerError):
    code = "VAR-NOT-SUPPORTED"


class CmdNotSupportedError(NutServerError):
    code = "CMD-NOT-SUPPORTED"
    default_hint = "list the UPS's instant commands with `upscmd -l UPS@HOST`"


class InvalidArgumentError(NutServerError):
    code = "INVALID-ARGUMENT"


class InstCmdFailedError(NutServerError):
    code = "INSTCMD-FAILED"


class SetFailedError(NutServerError):
    code = "SET-FAILED"


class ReadOnlyError(NutServerError):
    code = "READONLY"


class TooLongError(NutServerError):
    code = "TOO-LONG"


class FeatureNotSupportedError(NutServerError):
    code = "FEATURE-NOT-SUPPORTED"


class FeatureNotConfiguredError(NutServerError):
    code = "FEATURE-NOT-CONFIGURED"


class AlreadySslModeError(NutServerError):
    code = "ALREADY-SSL-MODE"


class DriverNotConnectedError(NutServerError):
    code = "DRIVER-NOT-CONNECTED"
    default_hint = "upsd cannot reach the UPS driver; check the driver process and the cable"


class DataStaleError(NutServerError):
    code = "DATA-STALE"
    default_hint = "the UPS driver stopped updating; check the driver and the cable"


class AlreadyLoggedInError(NutServerError):
    code = "ALREADY-LOGGED-IN"


class InvalidPasswordError(NutServerError):
    code = "INVALID-PASSWORD"


class AlreadySetPasswordError(NutServerError):
    code = "ALREADY-SET-PASSWORD"


class InvalidUsernameError(NutServerError):
    code = "INVALID-USERNAME"


class AlreadySetUsernameError(NutServerError):
    code = "ALREADY-SET-USERNAME"


class UsernameRequiredError(NutServerError):
    code = "USERNAME-REQUIRED"
    default_hint = "this request needs a login: give the plan a NUT username and password file"


class PasswordRequiredError(NutServerError):
    code = "PASSWORD-REQUIRED"
    default_hint = "this request needs a login: give the plan a NUT username and password file"


class UnknownCommandError(NutServerError):
    code = "UNKNOWN-COMMAND"


class InvalidValueError(NutServerError):
    code = "INVALID-VALUE"


#: Every ``ERR`` code of the NUT network protocol (docs/net-protocol.txt) -> its error class.
ERROR_CLASSES: dict[str, type[NutServerError]] = {
    cls.code: cls
    for cls in (
        AccessDeniedError,
        UnknownUpsError,
        VarNotSupportedError,
        CmdNotSupportedError,
        InvalidArgumentError,
        InstCmdFailedError,
        SetFailedError,
        ReadOnlyError,
        TooLongError,
        FeatureNotSupportedError,
        FeatureNotConfiguredError,
        AlreadySslModeError,
        DriverNotConnectedError,
        DataStaleError,
        AlreadyLoggedInError,
        InvalidPasswordError,
        AlreadySetPasswordError,
        InvalidUsernameError,
        AlreadySetUsernameError,
        UsernameRequiredError,
        PasswordRequiredError,
        UnknownCommandError,
        InvalidValueError,
    )
}


def server_error(code: str, extra: str = "", *, request: str = "") -> NutServerError:
    """The typed error for ``ERR code extra`` (the base class for a code we do not know)."""
    cls = ERROR_CLASSES.get(code, NutServerError)
    return cls(code, extra, request=request)
