"""The errors of the listeners, split by who is at fault.

:class:`ServeError` (``motte run`` exits 125) means the Keep could not start or keep
serving: a port in use, an identity whose key does not match its certificate. The two
bridge errors are about one request and never reach a user as an exception: the HTTP
adapter turns a :class:`BadRequestError` (the client's fault) into a 4xx answer, and a
:class:`BadGatewayError` (the guest's fault) into a 502 whose reason goes to the log.
"""

from __future__ import annotations

from motte.errors import ExitStatus, MotteError


class ServeError(MotteError):
    """The Keep cannot serve its listeners (a local error: configuration or the host).

    Not a ``KeepError`` subclass only to keep this module free of wasmtime's import; it
    carries the same exit status.
    """

    exit_status = ExitStatus.RUN_ERROR


class IdentityError(ServeError):
    """A TLS identity is unusable: malformed PEM, no certificate, a key that does not match."""


class BadRequestError(ServeError):
    """The client sent a request the bridge refuses; ``status`` is the 4xx to answer."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class BadGatewayError(ServeError):
    """The guest's answer cannot be sent: it becomes a 502, and this message is logged."""
