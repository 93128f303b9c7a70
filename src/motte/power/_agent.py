"""``motte power agent``: a small authenticated service that drains and stops its own host.

The coordinator asks; the agent runs only the two commands it was started with (``drain``
and ``stop``), so a stolen secret can at worst shut the host down, never run anything else.

Authentication is an HMAC-SHA256 over each request with a shared secret (a file, mode 0600,
at least 32 bytes), so the secret never crosses the network:

    Authorization: Motte-HMAC ts=<unix seconds>,nonce=<32 hex>,sig=<hex>
    sig = HMAC(secret, "METHOD\\nPATH\\nts\\nnonce\\nSHA256(body)")

A request more than :data:`WINDOW` seconds from the agent's clock, or reusing a nonce, is
refused (no replay). The answer carries ``X-Motte-Signature`` = HMAC(secret,
"response\\nnonce\\nstatus\\nSHA256(body)"), so a forged "stopped" cannot fool the
coordinator. The agent binds 127.0.0.1 unless told otherwise and has no unauthenticated mode.

Endpoints: ``GET /v1/status``; ``POST /v1/drain`` and ``POST /v1/stop`` with
``{"deadline": seconds}``; both start the command and answer 202 at once; the coordinator
polls ``/v1/status`` until the job is ``ok`` or ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motte.fsutil import atomic_write_text
from motte.power._errors import AgentError
from motte.power._runner import run_command

#: Seconds a request's timestamp may differ from the agent's clock.
WINDOW = 60.0
MIN_SECRET = 32
MAX_BODY = 4096
DEFAULT_PORT = 3494
POLL = 0.5


class AgentUnreachableError(AgentError):
    """The agent could not be reached (as opposed to: it answered, and said no)."""


def load_secret(path: Path) -> bytes:
    """Read a shared secret, refusing one others can read (as ssh refuses such a key)."""
    try:
        st = path.stat()
        data = path.read_bytes().strip()
    except OSError as e:
        raise AgentError(
            f"agent secret {path}: {e.strerror}",
            hint="create one with `motte power agent secret FILE`",
        ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AgentError(
            f"agent secret {path} is readable by other users", hint=f"chmod 600 {path}"
        )
    if len(data) < MIN_SECRET:
        raise AgentError(
            f"agent secret {path} is shorter than {MIN_SECRET} bytes",
            hint="create one with `motte power agent secret FILE`",
        )
    return data


def create_secret(path: Path) -> None:
    if path.exists():
        raise AgentError(f"{path} already exists; not overwriting a secret")
    atomic_write_text(path, secrets.token_hex(32) + "\n", mode=0o600)


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def request_signature(
    secret: bytes, method: str, path: str, ts: str, nonce: str, body: bytes
) -> str:
    msg = f"{method}\n{path}\n{ts}\n{nonce}\n{_digest(body)}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def response_signature(secret: bytes, nonce: str, status: int, body: bytes) -> str:
    msg = f"response\n{nonce}\n{status}\n{_digest(body)}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def _parse_auth(header: str) -> dict[str, str] | None:
    scheme, _, rest = header.partition(" ")
    if scheme != "Motte-HMAC":
        return None
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    if set(fields) != {"ts", "nonce", "sig"}:
        return None
    return fields


@dataclass
class Job:
    state: str = "idle"  # idle, running, ok, failed
    detail: str = ""
    started: float | None = None
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "detail": self.detail,
            "started": self.started,
            "finished": self.finished,
        }


class AgentApp:
    """The agent as a plain ASGI application (served by uvicorn)."""

    def __init__(
        self,
        secret: bytes,
        *,
        drain: tuple[str, ...] | None,
        stop: tuple[str, ...],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret = secret
        self.commands = {"drain": drain, "stop": stop}
        self.clock = clock
        self.jobs = {"drain": Job(), "stop": Job()}
        self._nonces: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                return await self._send(send, 413, {"error": "body too large"}, None)
            if not message.get("more_body"):
                break
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        auth = _parse_auth(headers.get("authorization", ""))
        method, path = scope["method"], scope["path"]
        if auth is None or not self._authentic(auth, method, path, body):
            return await self._send(send, 401, {"error": "not authenticated"}, None)
        status, payload = self._route(method, path, body)
        await self._send(send, status, payload, auth["nonce"])

    def _authentic(self, auth: dict[str, str], method: str, path: str, body: bytes) -> bool:
        now = self.clock()
        try:
            ts = float(auth["ts"])
        except ValueError:
            return False
        if abs(now - ts) > WINDOW or not (16 <= len(auth["nonce"]) <= 64):
            return False
        want = request_signature(self.secret, method, path, auth["ts"], auth["nonce"], body)
        if not hmac.compare_digest(want, auth["sig"]):
            return False
        for nonce, seen in list(self._nonces.items()):  # forget what the window rejects anyway
            if now - seen > 2 * WINDOW:
                del self._nonces[nonce]
        if auth["nonce"] in self._nonces:
            return False
        self._nonces[auth["nonce"]] = now
        return True

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == "/v1/status":
            return 200, self.status()
        step = path.removeprefix("/v1/")
        if method != "POST" or step not in self.commands:
            return 404, {"error": f"no such endpoint: {method} {path}"}
        try:
            deadline = float(json.loads(body or b"{}").get("deadline", 60))
        except (ValueError, AttributeError):
            return 400, {"error": 'body must be JSON: {"deadline": seconds}'}
        job = self.jobs[step]
        if job.state != "running":
            argv = self.commands[step]
            if argv is None:
                self.jobs[step] = Job(
                    "ok", "no drain command on this host", self.clock(), self.clock()
                )
            else:
                self.jobs[step] = job = Job("running", "", self.clock())
                task = asyncio.get_running_loop().create_task(
                    self._run(step, argv, min(max(deadline, 1.0), 3600.0))
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return 202, self.status()

    async def _run(self, step: str, argv: tuple[str, ...], deadline: float) -> None:
        result = await run_command(
            argv, timeout=deadline, env={"MOTTE_STEP": step, "MOTTE_DEADLINE": str(int(deadline))}
        )
        job = self.jobs[step]
        job.state = "ok" if result.ok else "failed"
        job.detail, job.finished = result.describe(), self.clock()

    def status(self) -> dict[str, Any]:
        return {
            "host": socket.gethostname(),
            **{name: job.to_dict() for name, job in self.jobs.items()},
        }

    async def _send(
        self, send: Any, status: int, payload: dict[str, Any], nonce: str | None
    ) -> None:
        body = json.dumps(payload, sort_keys=True).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if nonce is not None:
            sig = response_signature(self.secret, nonce, status, body)
            headers.append((b"x-motte-signature", sig.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def serve_agent(
    app: AgentApp, host: str, port: int, started: Callable[[int], None] | None = None
) -> None:
    """Serve until cancelled; ``started(port)`` is called once listening."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    # Shielded: cancelling us must make uvicorn shut down (close its sockets), not abandon it.
    task = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            if task.done():
                await task
                raise AgentError(f"agent could not listen on {host}:{port}")
            await asyncio.sleep(0.02)
        if started is not None:
            started(server.servers[0].sockets[0].getsockname()[1])
        await asyncio.shield(task)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await task


class AgentClient:
    """The coordinator's side: signed requests, verified answers."""

    def __init__(self, url: str, secret_file: Path, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.secret = load_secret(secret_file)
        self.timeout = timeout

    async def request(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        import httpx

        body = b"" if payload is None else json.dumps(payload).encode()
        ts, nonce = str(int(time.time())), secrets.token_hex(16)
        sig = request_signature(self.secret, method, path, ts, nonce, body)
        headers = {
            "authorization": f"Motte-HMAC ts={ts},nonce={nonce},sig={sig}",
            "content-type": "application/json",
        }
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                r = await client.request(method, self.url + path, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise AgentUnreachableError(f"agent {self.url}: {type(e).__name__}: {e}") from None
        if r.status_code == 401:
            raise AgentError(
                f"agent {self.url} refused our signature",
                hint="the coordinator and the agent must share one secret, and "
                "their clocks must agree within a minute",
            )
        want = response_signature(self.secret, nonce, r.status_code, r.content)
        if not hmac.compare_digest(want, r.headers.get("x-motte-signature", "")):
            raise AgentError(f"agent {self.url}: answer is not signed with the shared secret")
        try:
            data = json.loads(r.content)
        except ValueError:
            raise AgentError(f"agent {self.url}: answer is not JSON") from None
        return r.status_code, data

    async def run(
        self, step: str, *, deadline: float, clock: Callable[[], float] = time.time
    ) -> tuple[bool, str, bool]:
        """Ask for ``step`` and wait for its end; (ok, detail, timed_out)."""
        try:
            status, _ = await self.request(
                "POST", f"/v1/{step}", {"deadline": max(deadline - clock(), 1.0)}
            )
        except AgentError as e:
            return False, str(e), False
        if status != 202:
            return False, f"agent answered {status}", False
        while clock() < deadline:
            await asyncio.sleep(POLL)
            try:
                _, data = await self.request("GET", "/v1/status")
            except AgentUnreachableError as e:
                if step == "stop":
                    # It accepted the stop and is gone: that is what a host going down does.
                    return True, "agent went away after accepting stop", False
                return False, str(e), False
            except AgentError as e:  # a bad signature is never taken for "stopped"
                return False, str(e), False
            job = data.get(step, {})
            if job.get("state") in ("ok", "failed"):
                return job["state"] == "ok", str(job.get("detail", "")), False
        return False, f"{step} did not end before the deadline", True
