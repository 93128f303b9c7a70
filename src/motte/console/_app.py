"""The console's pages as a FastAPI app, wrapped in its guard.

Every page is a GET rendered on the server by Jinja2 with autoescaping on for every
template: a value reaches the HTML only escaped. The pages carry no JavaScript; the one
stylesheet ships in the package and is served from ``/static/console.css``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from motte.console._guard import ConsoleGuard, Token
from motte.console._power import power_view
from motte.console._views import (
    Sources,
    entry_view,
    keeps_view,
    log_view,
    secrets_view,
    trust_view,
)
from motte.errors import MotteError

NAV = (
    ("keeps", "Keeps"),
    ("secrets", "Secrets"),
    ("log", "Log"),
    ("trust", "Trust"),
    ("power", "Power"),
)
#: Query parameters are short words and digests: anything longer is cut before it is used.
MAX_PARAM = 512


@dataclass
class ConsoleConfig:
    """What the console shows and who may see it.

    ``token``: what a client that is not on this machine must present. The directories
    default to this installation's (``MOTTE_HOME``); ``trust_policies`` and ``plans`` are the
    only policies and plans a visitor may choose among, by name: no request names a path.
    """

    token: str
    steward_dir: Path | None = None
    log_dir: Path | None = None
    trust_policies: tuple[Path, ...] = ()
    plans: tuple[Path, ...] = ()
    secure_cookie: bool = False
    clock: Callable[[], float] = field(default=lambda: dt.datetime.now(dt.UTC).timestamp())


def _env() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("motte.console", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _names(paths: tuple[Path, ...], what: str, name_of: Callable[[Path], str]) -> dict[str, Path]:
    from motte.errors import UsageError

    out: dict[str, Path] = {}
    for p in paths:
        name = name_of(p)
        if name in out:
            raise UsageError(f"{what} {p}: another one is also called {name!r}")
        out[name] = p
    return out


class Console:
    """The console as an ASGI app (its pages behind :class:`ConsoleGuard`); close() when done."""

    def __init__(self, guard: ConsoleGuard, sources: Sources) -> None:
        self.guard = guard
        self.sources = sources

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.guard(scope, receive, send)

    def close(self) -> None:
        self.sources.close()


def create_console_app(config: ConsoleConfig, *, steward_store: Any = None) -> Console:
    """The console's pages, behind :class:`ConsoleGuard`.

    ``steward_store``: the Steward's own open store when the pages are mounted in
    ``motte steward serve`` (otherwise the console opens ``steward_dir``'s database).
    """
    from motte.home import motte_home
    from motte.power import load_plan
    from motte.steward import steward_dir

    policies = _names(config.trust_policies, "--trust-policy", lambda p: p.name)
    plans = _names(config.plans, "--plan", lambda p: load_plan(p).name)
    src = Sources(
        steward_dir=config.steward_dir or steward_dir(),
        log_dir=config.log_dir or (motte_home() / "tlog"),
        policies=policies,
        clock=config.clock,
        steward_store=steward_store,
    )
    env = _env()
    css = resources.files("motte.console").joinpath("static/console.css").read_bytes()
    app = FastAPI(title="motte console", docs_url=None, redoc_url=None, openapi_url=None)

    def get(path: str) -> Callable[[Any], Any]:
        return app.api_route(path, methods=["GET", "HEAD"])

    def params(request: Request) -> dict[str, str]:
        return {k: v[:MAX_PARAM] for k, v in request.query_params.items()}

    def page(
        request: Request,
        name: str,
        title: str,
        build: Callable[[], dict[str, Any]] | None = None,
        view: dict[str, Any] | None = None,
    ) -> HTMLResponse:
        context: dict[str, Any] = {
            "base": request.scope.get("root_path", "").rstrip("/"),
            "nav": NAV,
            "page": name,
            "title": title,
            "now": src.now().isoformat(timespec="seconds"),
            "error": None,
            "hint": None,
        }
        status = 200
        try:
            context["v"] = build() if build is not None else (view or {})
        except MotteError as e:
            context.update(error=e.message, hint=e.hint)
            name, status = "problem", 200
        else:
            context["error"] = context["v"].get("error")
        html = env.get_template(f"{name}.html").render(context)
        return HTMLResponse(html, status_code=status)

    @get("/")
    def index(request: Request) -> Response:
        base = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(f"{base}/keeps", status_code=303)

    @get("/static/console.css")
    def stylesheet() -> Response:
        return Response(css, media_type="text/css; charset=utf-8")

    @get("/keeps")
    def keeps(request: Request) -> HTMLResponse:
        return page(request, "keeps", "Keeps", lambda: keeps_view(src, params(request)))

    @get("/secrets")
    def secrets(request: Request) -> HTMLResponse:
        return page(request, "secrets", "Secrets", lambda: secrets_view(src, params(request)))

    @get("/log")
    def log(request: Request) -> HTMLResponse:
        return page(request, "log", "Transparency log", lambda: log_view(src, params(request)))

    @get("/log/entry/{index}")
    def entry(request: Request, index: int) -> HTMLResponse:
        return page(request, "entry", f"Log entry {index}", lambda: entry_view(src, index))

    @get("/trust")
    def trust(request: Request) -> HTMLResponse:
        return page(request, "trust", "Trust", lambda: trust_view(src, params(request)))

    @get("/power")
    async def power(request: Request) -> HTMLResponse:
        view = await power_view(plans, params(request), now=src.clock())
        return page(request, "power", "Power", view=view)

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>not found</title><p>no such page</p>", 404)

    guard = ConsoleGuard(app, Token(config.token), secure_cookie=config.secure_cookie)
    return Console(guard, src)
