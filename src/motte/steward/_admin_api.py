"""The admin API's routes and the release endpoint, added to the Steward's FastAPI app.

See :mod:`motte.steward._admin` for the routes, their authentication and their audit.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response

from motte.errors import ConfigError, MotteError, NotFoundError, UsageError
from motte.steward._admin import AdminTokens
from motte.steward._release import MAX_REQUEST_BYTES, ReleaseFormatError, unb64
from motte.steward._secrets import MAX_VALUE_BYTES
from motte.steward.errors import AdminAuthError, SecretKeyError
from motte.store import StoreUnavailableError

if TYPE_CHECKING:
    from motte.steward._service import Steward

MAX_ADMIN_BODY = 2 * MAX_VALUE_BYTES
PROBLEM = "application/problem+json"


def _json(doc: Any, status: int = 200, media: str = "application/json") -> Response:
    return Response(
        json.dumps(doc, indent=1) + "\n",
        status_code=status,
        media_type=media,
        headers={"Cache-Control": "no-store"},
    )


def _problem(status: int, kind: str, detail: str, hint: str | None = None) -> Response:
    doc: dict[str, Any] = {"type": f"/problems/{kind}", "title": kind, "status": status}
    doc["detail"] = detail
    if hint:
        doc["hint"] = hint
    response = _json(doc, status, PROBLEM)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="motte-steward-admin"'
    return response


def _say(line: str) -> None:
    print(f"motte steward: {line}", file=sys.stderr, flush=True)


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown"


def _error_response(e: MotteError) -> Response:
    if isinstance(e, AdminAuthError):
        return _problem(401, "admin-unauthorised", e.message, e.hint)
    if isinstance(e, NotFoundError):
        return _problem(404, "not-found", e.message, e.hint)
    if isinstance(e, StoreUnavailableError):
        return _problem(503, "database-unavailable", e.message, e.hint)
    if isinstance(e, SecretKeyError):
        # The operator's to fix on the Steward: the caller learns only that it must be.
        _say(f"secret store: {e.message}")
        return _problem(
            503,
            "secret-store-key",
            "the Steward's secret store cannot be opened with its master key",
            "the Steward's operator must give it the right key (see its log)",
        )
    if isinstance(e, UsageError | ConfigError):
        return _problem(400, "bad-request", e.message, e.hint)
    return _problem(500, "error", e.message, e.hint)


async def _body(request: Request, limit: int) -> bytes | None:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


def add_secret_routes(app: FastAPI, steward: Steward) -> None:
    """``POST /secrets/release`` (for Keeps) and the ``/admin`` routes (for operators)."""
    tokens = AdminTokens(steward.store.db)

    @app.post("/secrets/release")
    async def release(request: Request) -> Response:
        from motte.steward._releasing import RELEASE_PROBLEMS

        client = _client(request)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await _body(request, MAX_REQUEST_BYTES)
        if media != "application/json" or body is None:
            why = "larger than 8 MiB" if body is None else "send application/json"
            title = RELEASE_PROBLEMS["malformed-release-request"][0]
            return _problem(400, "malformed-release-request", f"{title}: {why}")
        try:
            decision = await asyncio.to_thread(steward.release, body, client=client)
        except MotteError as e:
            return _error_response(e)
        names = ", ".join(n for n, _ in decision.secrets) or "(none)"
        if decision.released:
            versions = ", ".join(f"{s.name} v{s.version}" for s in decision.sealed)
            _say(f"released to {client}: {versions} (audit {decision.audit_id})")
            return _json(decision.answer())
        _say(
            f"refused release of {names} to {client} (audit {decision.audit_id}): "
            + "; ".join(decision.reasons)
        )
        return _json(decision.problem_document(), decision.status, PROBLEM)

    def who(request: Request) -> str:
        client = _client(request)
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token:
            name = tokens.check(token.strip())
            if name is not None:
                return f"admin token {name} from {client}"
            raise AdminAuthError("the admin token is unknown or revoked")
        raise AdminAuthError(
            "the admin API needs a token (Authorization: Bearer)",
            hint="motte steward admin-token new NAME --out FILE, then --token-file FILE",
        )

    def admin(
        method: str, path: str, *, body: bool = False
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register an admin route: authenticate, read a bounded JSON body, run the
        operation on a worker thread, answer JSON or a problem."""

        def register(op: Callable[..., Any]) -> Callable[..., Any]:
            async def endpoint(request: Request) -> Response:
                try:
                    actor = await asyncio.to_thread(who, request)
                    doc: Any = None
                    if body:
                        raw = await _body(request, MAX_ADMIN_BODY)
                        if raw is None:
                            raise UsageError(f"the request is larger than {MAX_ADMIN_BODY} bytes")
                        try:
                            doc = json.loads(raw)
                        except (UnicodeDecodeError, json.JSONDecodeError):
                            raise UsageError("the body is not JSON") from None
                        if not isinstance(doc, dict):
                            raise UsageError("the body is not a JSON object")
                    args = dict(request.path_params)
                    result = await asyncio.to_thread(op, actor, request, doc, **args)
                except MotteError as e:
                    return _error_response(e)
                except ReleaseFormatError as e:
                    return _problem(400, "bad-request", str(e))
                return _json(result)

            app.add_api_route(path, endpoint, methods=[method])
            return op

        return register

    def _value(doc: dict[str, Any]) -> bytes:
        try:
            return unb64(doc.get("value"), "value", limit=MAX_VALUE_BYTES)
        except ReleaseFormatError as e:
            raise UsageError(str(e)) from None

    def _policy(doc: dict[str, Any], name: str) -> Any:
        from motte.steward._release_policy import parse_release_policy

        text = doc.get("policy")
        if text is None:
            return None
        if not isinstance(text, str):
            raise UsageError("policy: TOML text or null")
        return parse_release_policy(text, source=f"policy of {name}")

    # Custom methods first: a name never holds ':'.
    @admin("POST", "/admin/secrets/{name:path}:rotate", body=True)
    def rotate(actor: str, request: Request, doc: dict[str, Any], name: str) -> Any:
        info = steward.secrets.rotate(name, _value(doc), actor=actor)
        _say(f"{actor}: rotated {name} to version {info.latest}")
        return info.to_dict()

    @admin("PUT", "/admin/secrets/{name:path}:policy", body=True)
    def policy(actor: str, request: Request, doc: dict[str, Any], name: str) -> Any:
        info = steward.secrets.set_policy(name, _policy(doc, name), actor=actor)
        _say(f"{actor}: set the release policy of {name}")
        return info.to_dict()

    @admin("POST", "/admin/secrets/{name:path}:explain", body=True)
    def explain(actor: str, request: Request, doc: dict[str, Any], name: str) -> Any:
        from motte.attest import Evidence

        evidence = doc.get("evidence")
        try:
            ev = Evidence.from_dict(evidence) if evidence is not None else None
        except Exception as e:
            raise UsageError(f"evidence: {e}") from None
        digest = doc.get("workload_digest")
        if not isinstance(digest, str):
            raise UsageError("workload_digest: sha256:<64 hex>")
        statements = tuple(
            unb64(s, f"statements[{i}]", limit=2**20)
            for i, s in enumerate(doc.get("statements") or ())
        )
        return steward.explain(
            name, evidence=ev, workload_digest=digest, statements=statements
        ).to_dict()

    @admin("GET", "/admin/secrets")
    def list_secrets(actor: str, request: Request, doc: Any) -> Any:
        return [i.to_dict() for i in steward.secrets.list()]

    @admin("GET", "/admin/secrets-audit")
    def audit(actor: str, request: Request, doc: Any) -> Any:
        name = request.query_params.get("name")
        limit = request.query_params.get("limit")
        if limit is not None and not limit.isdigit():
            raise UsageError("limit: a whole number")
        rows = steward.secrets.audit(name=name, limit=int(limit) if limit else None)
        return [r.to_dict() for r in rows]

    @admin("GET", "/admin/secrets/{name:path}")
    def show(actor: str, request: Request, doc: Any, name: str) -> Any:
        return steward.secrets.show(name).to_dict()

    @admin("PUT", "/admin/secrets/{name:path}", body=True)
    def put(actor: str, request: Request, doc: dict[str, Any], name: str) -> Any:
        purpose = doc.get("purpose", "value")
        info = steward.secrets.put(
            name, _value(doc), policy=_policy(doc, name), actor=actor, purpose=purpose
        )
        _say(f"{actor}: put {name} version {info.latest}")
        return info.to_dict()

    @admin("DELETE", "/admin/secrets/{name:path}")
    def remove(actor: str, request: Request, doc: Any, name: str) -> Any:
        version = request.query_params.get("version")
        if version is not None and not version.isdigit():
            raise UsageError("version: a whole number")
        count = steward.secrets.remove(name, version=int(version) if version else None, actor=actor)
        _say(f"{actor}: removed {name}" + (f" version {version}" if version else ""))
        return {"name": name, "removed_versions": count}
