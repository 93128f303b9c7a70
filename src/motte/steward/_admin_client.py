"""``motte secret``'s two ways to a secret store: the local Steward's, or a remote one's.

:func:`open_secret_admin` gives an object with the same operations either way, answering
plain JSON-able dicts (metadata only: no operation returns a value):

- locally (no ``--steward``): the Steward under ``MOTTE_HOME/steward`` (its database, its
  master key file), the actor recorded as ``local uid N``;
- remotely (``--steward URL``): the admin API (motte.steward._admin) with a token from a
  0600 file (``--token-file``). Never anonymous: a token is required.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote, urlencode

from motte.errors import UsageError
from motte.steward._client import StewardClient
from motte.steward._release import b64
from motte.steward.errors import AdminAuthError, SecretNotFoundError, StewardUnreachableError


class LocalSecretAdmin:
    """The local Steward's store."""

    def __init__(self, database: str | None = None) -> None:
        from motte.steward._service import Steward

        self.steward = Steward(database=database)
        self.actor = f"local uid {os.getuid()}"
        self.where = f"the Steward in {self.steward.paths.root}"

    def close(self) -> None:
        self.steward.close()

    def __enter__(self) -> LocalSecretAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _policy(text: str | None, source: str) -> Any:
        from motte.steward._release_policy import parse_release_policy

        return parse_release_policy(text, source=source) if text is not None else None

    def list(self) -> list[dict[str, Any]]:
        return [i.to_dict() for i in self.steward.secrets.list()]

    def show(self, name: str) -> dict[str, Any]:
        return self.steward.secrets.show(name).to_dict()

    def put(
        self,
        name: str,
        value: bytes,
        policy: tuple[str, str] | None,
        purpose: str = "value",
    ) -> dict[str, Any]:
        parsed = self._policy(*policy) if policy else None
        info = self.steward.secrets.put(
            name, value, policy=parsed, actor=self.actor, purpose=purpose
        )
        return info.to_dict()

    def rotate(self, name: str, value: bytes) -> dict[str, Any]:
        return self.steward.secrets.rotate(name, value, actor=self.actor).to_dict()

    def set_policy(self, name: str, policy: tuple[str, str] | None) -> dict[str, Any]:
        parsed = self._policy(*policy) if policy else None
        return self.steward.secrets.set_policy(name, parsed, actor=self.actor).to_dict()

    def remove(self, name: str, version: int | None = None) -> dict[str, Any]:
        count = self.steward.secrets.remove(name, version=version, actor=self.actor)
        return {"name": name, "removed_versions": count}

    def explain(
        self, name: str, evidence: Any, workload_digest: str, statements: tuple[bytes, ...]
    ) -> dict[str, Any]:
        return self.steward.explain(
            name, evidence=evidence, workload_digest=workload_digest, statements=statements
        ).to_dict()

    def audit(self, name: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.steward.secrets.audit(name=name, limit=limit)]


class RemoteSecretAdmin:
    """A remote Steward's admin API."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if token is None:
            raise AdminAuthError(
                f"{url}: the admin API is never anonymous: give --token-file FILE",
                hint="motte steward admin-token new NAME --out FILE, on the Steward",
            )
        self._client = StewardClient(url, timeout=timeout)
        self._token = token
        self.where = f"the Steward at {self._client.url}"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RemoteSecretAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, doc: Any = None) -> Any:
        headers = {"Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        body = None
        if doc is not None:
            body = json.dumps(doc).encode()
            headers["Content-Type"] = "application/json"
        status, media, data = self._client._request(method, path, body, headers)
        try:
            answer = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise StewardUnreachableError(
                f"{self.where}{path}: HTTP {status}, not JSON ({media or 'no type'})"
            ) from None
        if status < 400:
            return answer
        detail = answer.get("detail", f"HTTP {status}") if isinstance(answer, dict) else status
        hint = answer.get("hint") if isinstance(answer, dict) else None
        if status == 401:
            raise AdminAuthError(f"{self.where} refused the admin request: {detail}", hint=hint)
        if status == 404:
            raise SecretNotFoundError(f"{self.where}: {detail}", hint=hint)
        if status == 400:
            raise UsageError(f"{self.where}: {detail}", hint=hint)
        raise StewardUnreachableError(f"{self.where}: HTTP {status}: {detail}", hint=hint)

    @staticmethod
    def _path(name: str, suffix: str = "") -> str:
        return f"/admin/secrets/{quote(name, safe='/')}{suffix}"

    def list(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/admin/secrets"))

    def show(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", self._path(name)))

    def put(
        self, name: str, value: bytes, policy: tuple[str, str] | None, purpose: str = "value"
    ) -> dict[str, Any]:
        self._check_policy(policy)
        doc = {"value": b64(value), "policy": policy[0] if policy else None, "purpose": purpose}
        return dict(self._call("PUT", self._path(name), doc))

    def rotate(self, name: str, value: bytes) -> dict[str, Any]:
        return dict(self._call("POST", self._path(name, ":rotate"), {"value": b64(value)}))

    def set_policy(self, name: str, policy: tuple[str, str] | None) -> dict[str, Any]:
        self._check_policy(policy)
        doc = {"policy": policy[0] if policy else None}
        return dict(self._call("PUT", self._path(name, ":policy"), doc))

    @staticmethod
    def _check_policy(policy: tuple[str, str] | None) -> None:
        """A malformed policy is named here, with its file and line, before it is sent."""
        if policy is not None:
            from motte.steward._release_policy import parse_release_policy

            parse_release_policy(policy[0], source=policy[1])

    def remove(self, name: str, version: int | None = None) -> dict[str, Any]:
        query = f"?{urlencode({'version': version})}" if version is not None else ""
        return dict(self._call("DELETE", self._path(name) + query))

    def explain(
        self, name: str, evidence: Any, workload_digest: str, statements: tuple[bytes, ...]
    ) -> dict[str, Any]:
        doc = {
            "evidence": evidence.to_dict() if evidence is not None else None,
            "workload_digest": workload_digest,
            "statements": [b64(s) for s in statements],
        }
        return dict(self._call("POST", self._path(name, ":explain"), doc))

    def audit(self, name: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        query = {k: v for k, v in (("name", name), ("limit", limit)) if v is not None}
        return list(
            self._call("GET", "/admin/secrets-audit" + (f"?{urlencode(query)}" if query else ""))
        )


def open_secret_admin(
    steward: str | None = None,
    *,
    token_file: str | os.PathLike[str] | None = None,
    database: str | None = None,
) -> LocalSecretAdmin | RemoteSecretAdmin:
    """The local Steward's store (``steward`` None) or a remote one's admin API."""
    if steward is None:
        if token_file is not None:
            raise UsageError("--token-file goes with --steward URL")
        return LocalSecretAdmin(database)
    if database is not None:
        raise UsageError("--db is for the local Steward; a remote one has its own")
    token = None
    if token_file is not None:
        from motte.steward._admin import read_token_file

        token = read_token_file(token_file)
    return RemoteSecretAdmin(steward, token=token)
