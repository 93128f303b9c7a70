"""``motte steward serve``: the Steward's HTTP API on FastAPI and uvicorn.

::

    GET  /health          {"status": "ok", "ca_sha256", "policy"}
    GET  /nonce           {"nonce": <base64url, 32 bytes>, "expires_at", "lifetime"}  no-store
    POST /attest          a CSR (application/pkcs10 DER, or PEM) -> the chain, leaf then CA
                          (application/pem-certificate-chain); refusals are RFC 9457
                          application/problem+json with every failed rule
    GET  /ca              the CA certificate (PEM): what clients pin
    GET  /problems/<type> what a problem type means

Verification is CPU work (about a millisecond of signature checks per request) and runs on
uvicorn's thread pool; each decision is also one line on standard error for the operator.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import threading
from typing import Any

# Imported only to serve; FastAPI resolves the endpoints' annotations from module globals.
from fastapi import FastAPI, Request, Response

from motte._listen import bind_listener, parse_listen
from motte._net import is_loopback_host
from motte.errors import MotteError, UsageError
from motte.steward._csr import MAX_CSR_BYTES
from motte.steward._service import PROBLEM_TYPES, Decision, Steward
from motte.store import StoreUnavailableError

EXAMPLE_LISTEN = "127.0.0.1:8440"

DER_TYPES = ("application/pkcs10",)
PEM_TYPES = ("application/x-pem-file", "application/pem-certificate-request", "text/plain")
CHAIN_TYPE = "application/pem-certificate-chain"


def _json(doc: Any, status: int = 200, media: str = "application/json") -> Response:
    return Response(
        json.dumps(doc, indent=1) + "\n",
        status_code=status,
        media_type=media,
        headers={"Cache-Control": "no-store"},
    )


def _problem(decision: Decision) -> Response:
    return _json(decision.problem_document(), decision.status, "application/problem+json")


def _say(line: str) -> None:
    print(f"motte steward: {line}", file=sys.stderr, flush=True)


def _unavailable(e: StoreUnavailableError, what: str) -> Response:
    """503: nothing was decided or recorded; the client retries (any replica)."""
    _say(f"{what}: {e.message}")
    title, text = PROBLEM_TYPES["database-unavailable"]
    doc = {
        "type": "/problems/database-unavailable",
        "title": title,
        "status": 503,
        "detail": text,
    }
    response = _json(doc, 503, "application/problem+json")
    response.headers["Retry-After"] = "1"
    return response


def log_decision(decision: Decision, client: str) -> None:
    verdict = decision.verdict
    # The launch measurement on every line: an operator compares it with `motte measure`.
    measured = f", measurement {verdict.measurement}" if verdict and verdict.measurement else ""
    if decision.accepted:
        kind = verdict.kind if verdict is not None else "?"
        _say(
            f"accepted {client}: {kind} keep{measured}, certificate {decision.serial} until "
            f"{decision.not_after.isoformat() if decision.not_after else '?'} "
            f"(audit {decision.audit_id})"
        )
    else:
        reasons = decision.reasons
        _say(f"rejected {client} (audit {decision.audit_id}{measured}): {'; '.join(reasons)}")


def create_app(steward: Steward, *, console: Any = None) -> FastAPI:
    """The Steward's API; with ``console`` (a :class:`motte.console.Console`) its pages too,
    under ``/console``, behind the console's own guard (read-only, loopback or token)."""
    from motte.steward._admin_api import add_secret_routes
    from motte.steward._volume_api import add_volume_routes

    app = FastAPI(title="motte Steward", docs_url=None, redoc_url=None, openapi_url=None)
    if console is not None:
        app.mount("/console", console)
    add_secret_routes(app, steward)
    add_volume_routes(app, steward)

    @app.get("/health")
    def health() -> Response:
        # A load balancer's check: a replica that cannot reach the database is taken out.
        try:
            steward.store.ping()
        except StoreUnavailableError as e:
            return _json({"status": "database unavailable", "detail": e.message}, 503)
        return _json(
            {"status": "ok", "ca_sha256": steward.ca.fingerprint, "policy": steward.policy.ref()}
        )

    @app.get("/nonce")
    def nonce() -> Response:
        try:
            grant = steward.new_nonce()
        except StoreUnavailableError as e:
            return _unavailable(e, "GET /nonce")
        if grant is None:
            doc = {
                "type": "/problems/too-many-nonces",
                "title": PROBLEM_TYPES["too-many-nonces"][0],
                "status": 503,
            }
            return _json(doc, 503, "application/problem+json")
        return _json(
            {
                "nonce": base64.urlsafe_b64encode(grant.nonce).rstrip(b"=").decode("ascii"),
                "expires_at": grant.expires_at.isoformat(),
                "lifetime": grant.lifetime,
            }
        )

    @app.get("/ca")
    def ca() -> Response:
        return Response(steward.ca.cert_pem, media_type=CHAIN_TYPE)

    @app.get("/problems/{name}")
    def problem_type(name: str) -> Response:
        from motte.steward._releasing import RELEASE_PROBLEMS

        known = {**PROBLEM_TYPES, **RELEASE_PROBLEMS}
        if name not in known:
            return Response("no such problem type\n", status_code=404, media_type="text/plain")
        title, text = known[name]
        return Response(f"{title}\n\n{text}\n", media_type="text/plain")

    @app.post("/attest")
    async def attest(request: Request) -> Response:
        client = f"{request.client.host}:{request.client.port}" if request.client else "unknown"
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in DER_TYPES + PEM_TYPES:
            try:
                decision = await asyncio.to_thread(
                    steward.refuse_request,
                    "unsupported-media-type",
                    415,
                    f"Content-Type {media or '(none)'!r}; send application/pkcs10",
                    client=client,
                )
            except StoreUnavailableError as e:
                return _unavailable(e, f"POST /attest from {client}: not recorded")
            log_decision(decision, client)
            return _problem(decision)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_CSR_BYTES:
                try:
                    decision = await asyncio.to_thread(
                        steward.refuse_request,
                        "request-too-large",
                        413,
                        f"more than {MAX_CSR_BYTES} bytes",
                        client=client,
                    )
                except StoreUnavailableError as e:
                    return _unavailable(e, f"POST /attest from {client}: not recorded")
                log_decision(decision, client)
                return _problem(decision)
        try:
            decision = await asyncio.to_thread(steward.attest, bytes(body), client=client)
        except StoreUnavailableError as e:
            return _unavailable(e, f"POST /attest from {client}: not decided")
        log_decision(decision, client)
        if not decision.accepted:
            return _problem(decision)
        assert decision.chain_pem is not None
        return Response(
            decision.chain_pem,
            media_type=CHAIN_TYPE,
            headers={"Cache-Control": "no-store", "X-Motte-Audit-Id": str(decision.audit_id)},
        )

    return app


def serve(
    steward: Steward,
    listen: str,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    allow_insecure_http: bool = False,
    console_token: str | None = None,
    show_console_token: bool = True,
) -> None:
    """Bind ``listen`` (port 0 picks one), say where, serve until SIGINT/SIGTERM.

    With ``console_token`` the console's pages are served too, under ``/console/``.
    """
    import uvicorn

    from motte._nodump import forbid_core_dumps

    # It holds the master key and, while releasing, secret values: no core dumps.
    forbid_core_dumps()
    host, _ = parse_listen(listen, example=EXAMPLE_LISTEN)
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    tls = tls_cert is not None
    if not tls and not is_loopback_host(host) and not allow_insecure_http:
        raise UsageError(
            f"--listen {listen}: plain HTTP off loopback lets anyone on the path answer for "
            "the Steward",
            hint="give --tls-cert and --tls-key, listen on 127.0.0.1, or (knowingly) "
            "--allow-insecure-http",
        )
    sock, where = bind_listener(listen, example=EXAMPLE_LISTEN)
    scheme = "https" if tls else "http"
    _warn_settings(steward)
    if not tls and not is_loopback_host(host):
        _say("WARNING: serving plain HTTP off loopback (--allow-insecure-http)")
    _say(f"CA {steward.ca.fingerprint} ({steward.paths.ca_cert})")
    _say(f"database {steward.store.where}")
    _say(f"serving on {scheme}://{where}")
    console = None
    if console_token is not None:
        from motte.console import ConsoleConfig, create_console_app

        console = create_console_app(
            ConsoleConfig(token=console_token, steward_dir=steward.paths.root, secure_cookie=tls),
            steward_store=steward.store,
        )
        _say(f"console (read-only) on {scheme}://{where}/console/")
        if show_console_token and not is_loopback_host(host):
            _say(f"console for other machines: {scheme}://{where}/console/?token={console_token}")
    config = uvicorn.Config(
        create_app(steward, console=console),
        log_level="warning",
        access_log=False,
        lifespan="off",
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )
    steward.record_loaded()
    _say(f"policy {_named(steward.policy)}; `kill -HUP {os.getpid()}` reloads it and the config")
    previous = signal.signal(signal.SIGHUP, lambda *_: _reload_in_background(steward))
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGHUP, previous)


def _named(policy: Any) -> str:
    return f"{policy.name!r} (sha256 {(policy.sha256 or '')[:16]}...)"


def _warn_settings(steward: Steward) -> None:
    if steward.policy.allow_insecure_sim:
        _say(
            f"WARNING: policy {steward.paths.policy} accepts INSECURE sim evidence: "
            "certificates from this Steward prove nothing about hardware"
        )
    if steward.config.unsafe_allow_unbound_enarx_csrs:
        _say("WARNING: unsafe_allow_unbound_enarx_csrs: Enarx CSRs are accepted without a nonce")


def _reload_in_background(steward: Steward) -> None:
    """SIGHUP: reload off the signal handler (it writes the audit log, which may wait on the
    database); requests go on meanwhile, each judged wholly by the old or the new policy."""

    def reload() -> None:
        try:
            result = steward.reload()
        except MotteError as e:  # the audit log itself is unreachable: nothing changed
            _say(f"reload failed: {e.message}; still judging by {_named(steward.policy)}")
            return
        if result.reloaded:
            _say(f"policy reloaded: {_named(result.after)}, was {_named(result.before)}")
            _warn_settings(steward)
        else:
            _say(f"reload refused: {result.error}; still judging by {_named(result.before)}")

    threading.Thread(target=reload, name="motte-steward-reload", daemon=True).start()
