"""The Keep's listeners: TLS 1.3 with the Keep's identity, a fresh instance per HTTP request
(WAGI/CGI style) or per TCP connection.

    from motte.keep import PreparedWorkload
    from motte.keep.serve import self_signed_identity, serve

    workload = PreparedWorkload.prepare(manifest)
    serve(workload, manifest.listen, self_signed_identity())   # blocks until SIGTERM

The identity is a :class:`TlsIdentity`: the Steward-issued chain of an attested Keep, or
:func:`self_signed_identity` when there is no Steward (the listeners then log a loud
warning: such a certificate attests nothing). :func:`serve_workload` is ``motte run``'s
path (logging, warnings, the self-signed default); it returns what it served
(:class:`Served`), which the command line prints. docs/keeps.md ("Listeners")
describes what a guest sees and what it must answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from motte._lazy import lazy_exports
from motte.keep.serve._errors import BadGatewayError, BadRequestError, IdentityError, ServeError
from motte.keep.serve._identity import TlsIdentity, self_signed_identity, server_context
from motte.keep.serve._options import BoundListener, ServeOptions, ServeStats

if TYPE_CHECKING:
    from motte.keep.serve._renew import Renewer
    from motte.keep.serve._run import Served, serve_workload
    from motte.keep.serve._server import serve

__all__ = [
    "BadGatewayError",
    "BadRequestError",
    "BoundListener",
    "IdentityError",
    "Renewer",
    "ServeError",
    "ServeOptions",
    "ServeStats",
    "Served",
    "TlsIdentity",
    "self_signed_identity",
    "serve",
    "serve_workload",
    "server_context",
]

# h11 and the serving machinery load when serving starts, not when an identity is built.
_LAZY = {
    "Renewer": "motte.keep.serve._renew",
    "Served": "motte.keep.serve._run",
    "serve": "motte.keep.serve._server",
    "serve_workload": "motte.keep.serve._run",
}


__getattr__ = lazy_exports(__name__, _LAZY, globals())
