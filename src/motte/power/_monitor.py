"""Watching one UPS: poll it, report changes, survive the server going away.

A plan that watches several UPSes runs one monitor each; every item a monitor queues names
its UPS.

NUT has no push, so the monitor polls (``LIST VAR``, one request) every ``poll_interval``
seconds, half a second by default, and reports a reading only when it changed: the
coordinator reacts within one poll of a status change, not on upsmon's 5 s cycle.

A lost server is an event, not a crash: the monitor reports :class:`Lost` once and reconnects
with exponential backoff (0.5 s doubling to 10 s, with jitter). DATA-STALE and
DRIVER-NOT-CONNECTED also count as lost (the link to the UPS is bad even if upsd answers).
A login the server *refuses* is different: a wrong password or user rights will not fix
themselves, so it is reported as :class:`LoginRefused` and the caller stops.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from motte.power._errors import PowerError
from motte.power._plan import UpsConfig
from motte.power._status import UpsReading, finite_number
from motte.power.nut import (
    AccessDeniedError,
    DataStaleError,
    DriverNotConnectedError,
    InvalidPasswordError,
    InvalidUsernameError,
    NutClient,
    NutConnectionError,
    NutServerError,
    PasswordRequiredError,
    RemoteProtocolError,
    UnknownUpsError,
    UsernameRequiredError,
)

BACKOFF_MIN = 0.5
BACKOFF_MAX = 10.0
_REFUSALS = (
    AccessDeniedError,
    InvalidPasswordError,
    InvalidUsernameError,
    UsernameRequiredError,
    PasswordRequiredError,
    UnknownUpsError,
)


# Each item names the UPS it comes from (``str(UpsAddress)``): a plan may watch several.


@dataclass(frozen=True, slots=True)
class Reading:
    reading: UpsReading
    ups: str = ""


@dataclass(frozen=True, slots=True)
class Lost:
    reason: str
    ups: str = ""


@dataclass(frozen=True, slots=True)
class LoginRefused:
    error: PowerError
    ups: str = ""


class UpsMonitor:
    def __init__(
        self,
        config: UpsConfig,
        queue: asyncio.Queue[object],
        *,
        role: Literal["primary", "secondary"] | None,
        poll_interval: float = 0.5,
        timeout: float = 5.0,
    ) -> None:
        self.config = config
        self.queue = queue
        self.role = role
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.ups = config.address.ups
        self._client: NutClient | None = None
        self._password = config.password() if config.username else None
        self._ssl = config.ssl_context()

    async def run(self) -> None:
        """Forever: connect, log in, poll; on trouble report it and reconnect."""
        delay, lost, last = BACKOFF_MIN, False, None
        addr = self.config.address
        while True:
            client = None
            try:
                client = await NutClient.connect(
                    addr.host,
                    addr.port,
                    timeout=self.timeout,
                    tls=self.config.tls,
                    ssl_context=self._ssl,
                )
                await self._login(client)
                self._client, delay = client, BACKOFF_MIN
                while True:
                    try:
                        reading = UpsReading.from_variables(await client.list_var(self.ups))
                    except (DataStaleError, DriverNotConnectedError) as e:
                        if not lost:
                            await self.queue.put(Lost(f"{addr}: {e.code}", str(addr)))
                            lost = True
                    else:
                        if lost or reading != last:
                            await self.queue.put(Reading(reading, str(addr)))
                            lost, last = False, reading
                    await asyncio.sleep(self.poll_interval)
            except _REFUSALS as e:
                await self.queue.put(LoginRefused(e, str(addr)))
                return
            except (NutConnectionError, RemoteProtocolError, NutServerError) as e:
                if not lost:
                    await self.queue.put(Lost(str(e), str(addr)))
                    lost = True
            finally:
                self._client = None
                if client is not None:
                    await client.close()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _login(self, client: NutClient) -> None:
        if self.config.username is None or self._password is None:
            return
        await client.authenticate(self.config.username, self._password)
        if self.role is not None:
            await client.login(self.ups)
        if self.role == "primary":
            await client.primary(self.ups)

    def _live(self) -> NutClient:
        if self._client is None:
            raise NutConnectionError(f"not connected to NUT server {self.config.address}")
        return self._client

    async def fsd(self) -> None:
        await self._live().fsd(self.ups)

    async def instcmd(self, cmd: str) -> None:
        await self._live().instcmd(self.ups, cmd)

    async def num_logins(self) -> int:
        return await self._live().get_num_logins(self.ups)


async def ups_runtime(upses: Sequence[UpsConfig], *, timeout: float = 5.0) -> float:
    """The shortest ``battery.runtime`` of ``upses``: the first to run out decides.

    Connects as the watch does (the same TLS mode and ``ca_file``), reads one variable, and
    refuses a value that is not a finite number of seconds.
    """
    runtimes = []
    for ups in upses:
        addr = ups.address
        async with await NutClient.connect(
            addr.host, addr.port, timeout=timeout, tls=ups.tls, ssl_context=ups.ssl_context()
        ) as client:
            value = await client.get_var(addr.ups, "battery.runtime")
        seconds = finite_number(value)
        if seconds is None or seconds < 0:
            raise PowerError(
                f"{addr}: battery.runtime is not a number of seconds: {value!r}",
                hint="check the UPS driver; or give plan check --runtime SECONDS",
            )
        runtimes.append(seconds)
    return min(runtimes)
