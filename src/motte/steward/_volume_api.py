"""``POST /volumes/release`` and ``POST /volumes/commit``: sealed volumes' keys and counters.

See :mod:`motte.steward._volume_wire` for the formats and :mod:`motte.steward._volumes` for
the decisions. Both are for Keeps (a release proves itself with fresh evidence, a commit
with a MAC under the volume's counter key); neither takes an admin token.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response

from motte.errors import MotteError
from motte.steward._admin_api import PROBLEM, _body, _client, _error_response, _json, _problem, _say
from motte.steward._release import MAX_REQUEST_BYTES

if TYPE_CHECKING:
    from motte.steward._service import Steward


def add_volume_routes(app: FastAPI, steward: Steward) -> None:
    @app.post("/volumes/release")
    async def release(request: Request) -> Response:
        from motte.steward._volumes import decide_volume_release

        client = _client(request)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await _body(request, MAX_REQUEST_BYTES)
        if media != "application/json" or body is None:
            why = "larger than 8 MiB" if body is None else "send application/json"
            return _problem(400, "malformed-release-request", f"malformed release request: {why}")

        def decide():  # type: ignore[no-untyped-def]
            with steward._one_settings():  # judged wholly by the old or the new settings
                return decide_volume_release(steward, body, client=client)

        try:
            decision = await asyncio.to_thread(decide)
        except MotteError as e:
            return _error_response(e)
        names = ", ".join(n for n, _ in decision.secrets) or "(none)"
        if decision.released:
            shown = ", ".join(f"{k.volume} v{k.version}" for k in decision.keys)
            _say(f"volume keys released to {client}: {shown} (audit {decision.audit_id})")
            return _json(decision.answer())
        _say(
            f"refused volume keys {names} to {client} (audit {decision.audit_id}): "
            + "; ".join(decision.reasons)
        )
        return _json(decision.problem_document(), decision.status, PROBLEM)

    @app.post("/volumes/commit")
    async def commit(request: Request) -> Response:
        from motte.steward._volumes import decide_volume_commit

        client = _client(request)
        body = await _body(request, 16 * 1024)
        if body is None:
            return _problem(400, "malformed-commit", "larger than 16 KiB")
        try:
            outcome = await asyncio.to_thread(decide_volume_commit, steward, body, client=client)
        except MotteError as e:
            return _error_response(e)
        if outcome.ok:
            return _json({"version": 1, "latest": outcome.latest, "detail": outcome.detail})
        _say(f"refused a volume commit from {client}: {outcome.detail}")
        doc = {
            "type": "/problems/volume-commit-refused",
            "title": "volume commit refused",
            "status": outcome.status,
            "detail": outcome.detail,
            "latest": outcome.latest,
        }
        return _json(doc, outcome.status, PROBLEM)
