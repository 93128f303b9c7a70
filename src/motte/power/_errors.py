"""Errors of motte.power above the protocol (the NUT protocol's own are in :mod:`.nut`).

- :class:`PlanError` / :class:`ScenarioError`: a shutdown plan or a simulator scenario file is
  malformed or inconsistent; the message names the file and the key.
- :class:`AgentError`: a host agent refused, failed to authenticate, or could not be reached.
"""

from __future__ import annotations

from motte.errors import ConfigError, MotteError, RemoteError


class PowerError(MotteError):
    """Base of every motte.power error (NUT protocol errors are :class:`~.nut.NutError`)."""


class PlanError(PowerError, ConfigError):
    """A shutdown plan is malformed or inconsistent (names the file and the key).

    ``problems`` lists every problem found (one line each); the message is the first.
    """

    def __init__(
        self, message: str, *, hint: str | None = None, problems: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or (message,)


class ScenarioError(PowerError, ConfigError):
    """A simulator scenario is malformed (names the file and the key)."""


class AgentError(PowerError, RemoteError):
    """A motte power agent refused a request, failed to authenticate, or was unreachable."""
