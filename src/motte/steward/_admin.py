"""The secret store's admin API: the same operations as the local commands, authenticated.

Never anonymous. A caller proves itself with a **bearer token** (``Authorization: Bearer
mat_...``): made by ``motte steward admin-token new NAME --out FILE`` (the token goes to
FILE, mode 0600, and nowhere else; the Steward's database keeps its SHA-256 and name, shared
by replicas, so a stolen disk or database gives no token). Mutual TLS (a client certificate
instead of a token) is not built: uvicorn does not hand a request its client certificate,
so it needs a listener of its own (docs/secrets.md, "Not done").

Routes (JSON; names may hold ``/``, custom methods follow ``:`` as Google's API style does)::

    GET    /admin/secrets                      list (metadata only)
    GET    /admin/secrets/NAME                 show (metadata and policy, never a value)
    PUT    /admin/secrets/NAME                 put: {"value": b64url, "policy": TOML|null}
    POST   /admin/secrets/NAME:rotate          a new version: {"value": b64url}
    PUT    /admin/secrets/NAME:policy          {"policy": TOML|null}
    DELETE /admin/secrets/NAME[?version=N]     remove (every version, or one)
    POST   /admin/secrets/NAME:explain         {"evidence": {...}|null, "workload_digest",
                                                "statements": [b64url]}
    GET    /admin/secrets-audit[?name=&limit=] the secrets' audit log

Errors are RFC 9457 problem documents whose ``detail`` is the library's one-line message
(never a value: no message of the store holds one). Each change is audited with who made
it (``admin token NAME from ADDRESS`` or ``admin certificate SUBJECT from ADDRESS``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from motte.steward.errors import AdminAuthError, SecretUsageError

if TYPE_CHECKING:
    from motte.store import Database

TOKEN_PREFIX = "mat_"
MAX_TOKEN_FILE = 4096


def _hash(token: str) -> str:
    return hashlib.sha256(b"motte/admin-token/v1\x00" + token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AdminToken:
    name: str
    created_at: str
    revoked_at: str | None


class AdminTokens:
    """The admin tokens in the Steward's database (their hashes)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def new(self, name: str, *, now: datetime | None = None) -> str:
        """A new token named ``name``; returned once, stored only as its hash."""
        from motte.steward._secrets import check_name

        check_name(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        when = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        from motte.store import ConstraintError

        try:
            with self.db.write() as tx:
                tx.execute(
                    "INSERT INTO admin_token (name, sha256, created_at) VALUES (?, ?, ?)",
                    (name, _hash(token), when),
                )
        except ConstraintError:
            raise SecretUsageError(
                f"an admin token named {name} exists",
                hint=f"revoke it first (motte steward admin-token revoke {name}) or pick a name",
            ) from None
        return token

    def revoke(self, name: str, *, now: datetime | None = None) -> None:
        from motte.steward.errors import SecretNotFoundError

        when = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        changed = self.db.write_one(
            "UPDATE admin_token SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            (when, name),
        )
        if changed != 1:
            raise SecretNotFoundError(f"no live admin token named {name}")

    def list(self) -> list[AdminToken]:
        with self.db.read() as tx:
            rows = tx.all("SELECT name, created_at, revoked_at FROM admin_token ORDER BY name")
        return [AdminToken(*r) for r in rows]

    def check(self, token: str) -> str | None:
        """The name of the live token ``token`` is, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 256:
            return None
        digest = _hash(token)
        with self.db.read() as tx:
            row = tx.one(
                "SELECT name, sha256 FROM admin_token WHERE sha256 = ? AND revoked_at IS NULL",
                (digest,),
            )
        # The lookup is by hash (nothing about the token leaks through its timing); compare
        # once more in constant time all the same.
        if row is None or not hmac.compare_digest(row[1], digest):
            return None
        return str(row[0])


def read_token_file(path: Any) -> str:
    """An admin token from a file only its owner can read (as ssh reads a key)."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise AdminAuthError(f"{path}: cannot read the admin token: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
            raise AdminAuthError(
                f"{path}: an admin token file must be a regular file only its owner can read "
                f"(mode {stat.S_IMODE(st.st_mode):04o})",
                hint=f"chmod 600 {path}",
            )
        data = os.read(fd, MAX_TOKEN_FILE)
    finally:
        os.close(fd)
    token = data.decode("ascii", "replace").strip()
    if not token.startswith(TOKEN_PREFIX):
        raise AdminAuthError(f"{path}: not a motte admin token")
    return token
