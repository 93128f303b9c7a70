"""The Keep's listeners: TLS 1.3 with the Keep's identity, a fresh instance per HTTP request
(WAGI/CGI style) or per TCP connection.

    from motte.keep import PreparedWorkload
    from motte.keep.serve import self_signed_identity, serve

    workload = PreparedWorkload.prepare(manifest)
    serve(workload, manifest.listen, self_signed_identity())   # blocks until SIGTERM

The identity is a :class:`TlsIdentity`: the Steward-issued chain of an attested Keep, or
:func:`self_signed_identity` when there is no Steward (the listeners then log a loud
warning: such a certificate attests nothing). docs/keeps.md ("Listeners") describes what
a guest sees and what it must answer.
"""

from __future__ import annotations

from motte.keep.serve._errors import BadGatewayError, BadRequestError, IdentityError, ServeError
from motte.keep.serve._identity import TlsIdentity, self_signed_identity, server_context

__all__ = [
    "BadGatewayError",
    "BadRequestError",
    "IdentityError",
    "ServeError",
    "TlsIdentity",
    "self_signed_identity",
    "server_context",
]
