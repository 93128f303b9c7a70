"""``motte console``: serve the pages on uvicorn, on loopback unless told otherwise."""

from __future__ import annotations

import sys

from motte._listen import bind_listener, parse_listen
from motte._net import is_loopback_host
from motte.console._app import ConsoleConfig, create_console_app
from motte.errors import UsageError

EXAMPLE_LISTEN = "127.0.0.1:8480"


def _say(line: str) -> None:
    print(f"motte console: {line}", file=sys.stderr, flush=True)


def serve_console(
    config: ConsoleConfig,
    listen: str = EXAMPLE_LISTEN,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    allow_insecure_http: bool = False,
    show_token: bool = True,
) -> None:
    """Bind ``listen`` (port 0 picks one), say where (and the token, once), serve until
    SIGINT/SIGTERM.

    Off loopback the token crosses the network, so plain HTTP there is refused unless
    ``allow_insecure_http``: give a certificate.
    """
    import uvicorn

    host, _ = parse_listen(listen, example=EXAMPLE_LISTEN)
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    tls = tls_cert is not None
    if not tls and not is_loopback_host(host) and not allow_insecure_http:
        raise UsageError(
            f"--listen {listen}: plain HTTP off loopback sends the console's token in clear",
            hint="give --tls-cert and --tls-key, listen on 127.0.0.1, or (knowingly) "
            "--allow-insecure-http",
        )
    config.secure_cookie = tls
    app = create_console_app(config)
    sock, where = bind_listener(listen, example=EXAMPLE_LISTEN)
    scheme = "https" if tls else "http"
    if not tls and not is_loopback_host(host):
        _say("WARNING: serving plain HTTP off loopback (--allow-insecure-http)")
    _say(f"serving on {scheme}://{where}/ (read-only)")
    if is_loopback_host(host):
        # No other machine can reach it, and a client on this one needs no token: print none.
        _say("clients on this machine need no token; --listen another address for others")
    elif show_token:
        # Printed once, here, for the operator; never logged again.
        _say(f"for other machines: {scheme}://{where}/?token={config.token}")
    try:
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                ssl_certfile=tls_cert,
                ssl_keyfile=tls_key,
            )
        )
        server.run(sockets=[sock])
    finally:
        app.close()
