"""Registry credentials, from the environment or a credentials file, never from a flag.

Looked up in this order, for the registry host[:port] a command talks to:

1. ``MOTTE_REGISTRY_TOKEN``: a bearer token, sent as is.
2. ``MOTTE_REGISTRY_USER`` and ``MOTTE_REGISTRY_PASSWORD``: basic credentials, sent to the
   registry (Basic challenge) or to its token service (Bearer challenge).
3. ``MOTTE_HOME/credentials.toml``: ``[registries."host:port"]`` with ``username`` and
   ``password``, or ``token``. The file must be readable by its owner only (like ~/.ssh).
4. Docker's ``config.json`` (``$DOCKER_CONFIG`` or ``~/.docker``): ``auths."host:port".auth``.
   Credential helpers (``credsStore``, ``credHelpers``) are not run.

:class:`motte.oci._registry.RegistryAuth` answers the distribution spec's challenges: ``Basic``
with the credentials, ``Bearer realm=...,service=...,scope=...`` by fetching a token from the realm
(with the basic credentials when there are some) and retrying once.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from motte.home import motte_home
from motte.oci._errors import AuthError, RegistryError

ENV_TOKEN = "MOTTE_REGISTRY_TOKEN"
ENV_USER = "MOTTE_REGISTRY_USER"
ENV_PASSWORD = "MOTTE_REGISTRY_PASSWORD"
_MAX_TOKEN_RESPONSE = 1 << 20


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    token: str | None = None
    #: Where they came from, for messages ("MOTTE_REGISTRY_USER", a file path).
    source: str = ""

    def __repr__(self) -> str:  # never print secrets, even in a debug traceback
        kind = "token" if self.token else "basic"
        return f"Credentials({kind} from {self.source})"


def credentials_path() -> Path:
    return motte_home() / "credentials.toml"


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def find_credentials(registry: str) -> Credentials | None:
    """Credentials for ``registry`` (host[:port]) or None; a malformed source is an error."""
    token = os.environ.get(ENV_TOKEN)
    if token:
        return Credentials(token=token, source=ENV_TOKEN)
    user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
    if user or password:
        if not (user and password):
            missing = ENV_PASSWORD if user else ENV_USER
            raise AuthError(f"{missing} is not set (both {ENV_USER} and {ENV_PASSWORD} are needed)")
        return Credentials(username=user, password=password, source=ENV_USER)
    found = _from_motte_file(credentials_path(), registry)
    if found is not None:
        return found
    return _from_docker_config(docker_config_path(), registry)


def _from_motte_file(path: Path, registry: str) -> Credentials | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise AuthError(
            f"{path}: credentials file is readable by others (mode {stat.S_IMODE(st.st_mode):o})",
            hint=f"chmod 600 {path}",
        )
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise AuthError(f"{path}: not valid TOML: {e}") from e
    registries = doc.get("registries", {})
    entry = registries.get(registry) if isinstance(registries, dict) else None
    if entry is None:
        return None
    where = f'{path}: [registries."{registry}"]'
    if not isinstance(entry, dict):
        raise AuthError(f"{where} must be a table")
    unknown = set(entry) - {"username", "password", "token"}
    if unknown:
        raise AuthError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if "token" in entry:
        if not isinstance(entry["token"], str) or set(entry) != {"token"}:
            raise AuthError(f"{where}: 'token' must be a string and stand alone")
        return Credentials(token=entry["token"], source=str(path))
    user, password = entry.get("username"), entry.get("password")
    if not (isinstance(user, str) and isinstance(password, str) and user):
        raise AuthError(f"{where}: needs 'username' and 'password' strings (or 'token')")
    return Credentials(username=user, password=password, source=str(path))


def _from_docker_config(path: Path, registry: str) -> Credentials | None:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise AuthError(f"{path}: not readable as JSON: {e}") from e
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    entry = auths.get(registry) or auths.get(f"https://{registry}")
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as e:
            raise AuthError(f"{path}: auths.{registry}.auth is not base64 of user:password") from e
        return Credentials(username=user, password=password, source=str(path))
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Credentials(username=entry["username"], password=entry["password"], source=str(path))
    return None


_PARAM_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="...",service="..."`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
        pos = m.end()
    return scheme.lower(), params


def token_from_answer(body: bytes, realm: str) -> str:
    if len(body) > _MAX_TOKEN_RESPONSE:
        raise RegistryError(
            f"token service {realm}: answer larger than {_MAX_TOKEN_RESPONSE} bytes"
        )
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RegistryError(f"token service {realm}: answer is not JSON") from e
    token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise RegistryError(f"token service {realm}: answer has no 'token'")
    return token


def no_credentials_error(registry: str, what: str) -> AuthError:
    return AuthError(
        f"{registry}: authentication required ({what}) and no credentials were found",
        hint=f"set {ENV_USER} and {ENV_PASSWORD} (or {ENV_TOKEN}), or add "
        f'[registries."{registry}"] to {credentials_path()}',
    )


def refused_error(registry: str, creds: Credentials, what: str) -> AuthError:
    return AuthError(
        f"{registry}: refused the credentials from {creds.source} ({what})",
        hint="check the user name and password, and that they may push/pull this repository",
    )
