"""HTTP front ends: the log (``motte log serve``) and a witness (``motte log witness serve``).

FastAPI on uvicorn: the log's reads are static tlog-tiles paths that any HTTP cache can hold,
its one write is ``POST /add``. Appends are *group-committed*: requests that arrive while a
batch is being fsynced wait in a queue and go into the next batch, so the log does one
transaction, one fsync and one checkpoint signature per batch instead of per entry, and a
client's ``200`` means its entry is durable and covered by the checkpoint now served (and
cosigned, when witnesses are configured).

On PostgreSQL one ``motte log serve`` at a time is the log's *sequencer* (it holds the
store's sequencer lease); any other is a hot standby that serves every read from the same
database and answers ``POST /add`` with 503 until the sequencer dies, then takes over: it
signs a checkpoint for whatever the dead one committed (after checking it extends the last
one signed) and appends from there. On SQLite the server is the sequencer at once.

Log endpoints::

    GET  /checkpoint                       latest checkpoint (+ cosignatures), not cached
    GET  /tile/<L>/<N>[.p/<W>]             hash tiles, immutable
    GET  /tile/entries/<N>[.p/<W>]         entry bundles, immutable (gzip when accepted)
    GET  /vkey                             the log's verifier key
    POST /add                              one entry (<= 65535 bytes) -> {"index", "leaf_hash"}
    GET  /proof/inclusion/<index>          tlog-proof bundle (for clients that do not read tiles)
    GET  /proof/consistency/<old>/<new>    base64 hashes, one per line

Witness endpoints (C2SP tlog-witness)::

    POST /add-checkpoint                   old size, proof, checkpoint -> cosignature line
    GET  /vkey                             the witness's cosigner key
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

# This module is imported only to serve, so FastAPI is imported at the top: FastAPI resolves
# the endpoints' annotations (Request) from these module globals.
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from motte._listen import bind_listener
from motte.store import StoreError
from motte.tlog._errors import (
    LogNotFoundError,
    TlogError,
    TlogFormatError,
    TlogUsageError,
    WitnessRefusedError,
)
from motte.tlog._log import LocalLog, LoggedEntry
from motte.tlog._tiles import MAX_ENTRY_SIZE, parse_tile_path

if TYPE_CHECKING:
    from motte.tlog._witness import Witness

log = logging.getLogger("motte.tlog.server")

MAX_BATCH = 4096
_IMMUTABLE = "public, max-age=31536000, immutable"


class Standby(Exception):
    """This server is not (or no longer) the log's sequencer: appends go elsewhere."""


STANDBY = "standby: another process is this log's sequencer; retry (it takes appends)"
UNAVAILABLE = "the log's database is unavailable; appends resume when it answers again"


def _say(line: str) -> None:
    print(f"motte log: {line}", file=sys.stderr, flush=True)


class Sequencer:
    """Collects concurrent appends into batches: one transaction + one checkpoint per batch."""

    def __init__(self, log_: LocalLog, *, max_batch: int = MAX_BATCH) -> None:
        self.log = log_
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[bytes, asyncio.Future[LoggedEntry]]] = asyncio.Queue()
        #: True while this process may append (always on SQLite once started).
        self.active = False
        #: Why appends are refused while not active (the answer's text).
        self.why = STANDBY
        self._stop = threading.Event()

    async def add(self, entry: bytes) -> LoggedEntry:
        if not self.active:
            raise Standby(self.why)
        fut: asyncio.Future[LoggedEntry] = asyncio.get_running_loop().create_future()
        await self._queue.put((entry, fut))
        return await fut

    def stop(self) -> None:
        self._stop.set()

    async def _take_over(self) -> None:
        """Become the sequencer: wait (as a hot standby) for the lease, then sign a
        checkpoint for entries a dead predecessor committed but did not sign."""
        store = self.log.store
        if store.db.dialect != "sqlite":
            if not store.is_sequencer and not store.sequencer.try_acquire():
                try:
                    await asyncio.to_thread(store.size)
                except StoreError:
                    self.why = UNAVAILABLE
                else:
                    self.why = STANDBY
                    _say("standby: another process is the sequencer; serving reads, waiting")
                got = await asyncio.to_thread(store.acquire_sequencer, stop=self._stop)
                if not got:
                    return
            size, _ = await asyncio.to_thread(self.log.sign_checkpoint)
            _say(f"sequencer: this process appends now, from size {size}")
        self.active = True

    def _lost(self, e: Exception) -> None:
        """The lease went (the database restarted, or the connection broke): refuse what is
        queued, and take the lease again before appending anything more."""
        self.active = False
        self.why = UNAVAILABLE
        _say(f"sequencer: lost the database ({e}); appends refused until it is back")
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(Standby(self.why))

    def _commit(self, entries: list[bytes]) -> list[LoggedEntry]:
        # A store that refuses to sign is asked first, so a refused batch appends nothing.
        return self.log.append_signed(entries)

    async def run(self) -> None:
        while True:
            while not self.active:
                await self._take_over()
                if self._stop.is_set():
                    return
                if not self.active:
                    await asyncio.sleep(1.0)
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                logged = await asyncio.to_thread(self._commit, [e for e, _ in batch])
            except Exception as e:  # the batch failed as a whole: nobody was acknowledged
                log.error("append batch of %d failed: %s", len(batch), e)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                if isinstance(e, StoreError) and not self.log.store.is_sequencer:
                    self._lost(e)
                continue
            for (_, fut), got in zip(batch, logged, strict=True):
                if not fut.done():
                    fut.set_result(got)


def _text(body: str | bytes, *, cache: str = "no-cache", status: int = 200, **kw: Any) -> Any:
    return Response(
        body,
        status_code=status,
        media_type=kw.pop("media_type", "text/plain; charset=utf-8"),
        headers={"Cache-Control": cache, **kw.pop("headers", {})},
    )


def _unavailable(message: str) -> Any:
    return _text(message + "\n", status=503, cache="no-store", headers={"Retry-After": "1"})


def _error(e: TlogError) -> Any:
    status = 404 if isinstance(e, LogNotFoundError) else 400
    if not isinstance(e, LogNotFoundError | TlogUsageError | TlogFormatError):
        status = 500
    return _text(e.message + "\n", status=status)


def create_log_app(log_: LocalLog, *, max_batch: int = MAX_BATCH) -> FastAPI:
    seq = Sequencer(log_, max_batch=max_batch)
    if log_.store.db.dialect == "sqlite" or log_.store.sequencer.try_acquire():
        log_.sign_checkpoint()  # entries committed before a crash get their checkpoint now
        seq.active = True
        if log_.store.db.dialect != "sqlite":
            _say(f"sequencer: this process appends, from size {log_.store.known_size}")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(seq.run())
        yield
        seq.stop()
        task.cancel()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sequencer = seq
    store = log_.store

    @app.exception_handler(StoreError)
    async def store_error(request: Request, e: StoreError) -> Any:
        # The database is away, or a standby was asked to write: never a traceback.
        return _unavailable(e.message)

    @app.get("/checkpoint")
    def checkpoint() -> Any:
        latest = store.latest_checkpoint()
        if latest is None:  # another process created the database and has not signed yet
            latest = log_.sign_checkpoint()
        size, note = latest
        return _text(note + "".join(store.cosignature_lines(size)).encode())

    @app.get("/vkey")
    def vkey() -> Any:
        return _text(log_.verifier_key + "\n", cache="public, max-age=3600")

    @app.get("/tile/{path:path}")
    def tile(path: str, request: Request) -> Any:
        try:
            t = parse_tile_path("tile/" + path)
        except TlogFormatError as e:
            return _error(e)
        data = store.read_tile(t)
        if data is None:
            return _text(f"{t.path}: not in the tree\n", status=404)
        headers = {}
        if t.is_entries and "gzip" in request.headers.get("accept-encoding", ""):
            data = gzip.compress(data, 6)
            headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        return _text(data, cache=_IMMUTABLE, media_type="application/octet-stream", headers=headers)

    @app.post("/add")
    async def add(request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_ENTRY_SIZE):
            return _text(f"an entry is at most {MAX_ENTRY_SIZE} bytes\n", status=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_ENTRY_SIZE:
                return _text(f"an entry is at most {MAX_ENTRY_SIZE} bytes\n", status=413)
        try:
            got = await seq.add(bytes(body))
        except Standby as e:
            return _unavailable(str(e))
        except StoreError as e:
            return _unavailable(e.message)
        except TlogError as e:
            return _error(e)
        return JSONResponse(
            {"index": got.index, "leaf_hash": base64.b64encode(got.leaf_hash).decode()}
        )

    @app.get("/proof/inclusion/{index}")
    def inclusion(index: int) -> Any:
        try:
            return _text(log_.inclusion_bundle(index).to_bytes())
        except TlogError as e:
            return _error(e)

    @app.get("/proof/consistency/{old}/{new}")
    def consistency(old: int, new: int) -> Any:
        try:
            proof = log_.consistency_proof(old, new)
        except TlogError as e:
            return _error(e)
        lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
        return _text(lines, cache=_IMMUTABLE)

    return app


def create_witness_app(witness: Witness, *, clock: Callable[[], float] = time.time) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> Any:
        from motte.tlog._witness import MAX_REQUEST_SIZE

        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_SIZE:
                return _text("request too large\n", status=413)
        try:
            line = await asyncio.to_thread(witness.add_checkpoint, bytes(body), now=int(clock()))
        except WitnessRefusedError as e:
            if e.status == 409 and e.witness_size is not None:
                # Set verbatim: Starlette would append "; charset=utf-8" to a text/ media type.
                return Response(
                    f"{e.witness_size}\n",
                    status_code=409,
                    headers={"Content-Type": "text/x.tlog.size", "Cache-Control": "no-store"},
                )
            return _text(e.message + "\n", status=e.status)
        return _text(line)

    @app.get("/vkey")
    def vkey() -> Any:
        return _text(witness.verifier_key + "\n", cache="public, max-age=3600")

    return app


def serve(app: FastAPI, listen: str, *, what: str) -> None:
    """Bind ``listen`` (port 0 picks one), say where on stderr, serve until interrupted."""
    import uvicorn

    sock, where = bind_listener(listen, example="127.0.0.1:8470")
    print(f"motte log: serving {what} on http://{where}", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
