"""The operator's console: the Keeps, the log, trust and power, as read-only web pages.

    from motte.console import ConsoleConfig, create_console_app, serve_console

    app = create_console_app(ConsoleConfig(token=new_token(), plans=(Path("lab.toml"),)))

Five pages, rendered on the server (Jinja2, autoescaped; no JavaScript): **Keeps** (the
Steward's decisions: attested Keeps, renewals, refusals with every reason), **Secrets**
(releases and refusals per secret, from the secrets' audit log; never a value), **Log**
(search the transparency log; an entry verified as ``motte verify`` does), **Trust** (a
package's five-area verdict under a policy the operator named) and **Power** (the UPS now,
its last hours, the plan's timeline, past shutdowns replayed).

Read-only and closed by default (:mod:`._guard`): only GET and HEAD; loopback clients naming
a loopback host, or the token, compared in constant time; a strict Content-Security-Policy.
``motte console`` serves it; ``motte steward serve --console`` mounts it at ``/console``.
See docs/console.md.
"""

from motte.console._app import Console, ConsoleConfig, create_console_app
from motte.console._guard import (
    COOKIE,
    CSP,
    SECURITY_HEADERS,
    ConsoleGuard,
    Token,
    new_token,
    read_token_file,
)
from motte.console._serve import serve_console

__all__ = [
    "COOKIE",
    "CSP",
    "SECURITY_HEADERS",
    "Console",
    "ConsoleConfig",
    "ConsoleGuard",
    "Token",
    "create_console_app",
    "new_token",
    "read_token_file",
    "serve_console",
]
