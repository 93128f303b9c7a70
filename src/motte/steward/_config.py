"""Where the Steward keeps its state, its config file, and the SAN allow-list.

Under ``motte_home()/steward`` (mode 0700)::

    ca-key.pem      the CA's private key (PKCS#8, mode 0600); never leaves this directory
    ca.pem          the CA's self-signed certificate: what clients pin (--steward-ca)
    config.toml     the settings below
    policy.toml     the attestation policy (motte.attest) evidence is judged by
    steward.db      SQLite: nonces (single use) and the append-only audit log (unless
                    config.toml names a PostgreSQL database shared by replicas)

config.toml::

    san_allow = ["localhost", "127.0.0.1", "::1"]   # names a Keep may ask for
    certificate_lifetime = 86400                    # seconds a Keep certificate is valid
    nonce_lifetime = 60                             # seconds a nonce may be used in
    online_collateral = false                       # fetch VCEKs, CRLs, TCB info if missing
    unsafe_allow_unbound_enarx_csrs = false         # accept Enarx CSRs: no workload, no nonce
    database = "postgresql://steward@db/motte"      # optional (init --db): replicas share it

Unknown keys and wrong types are errors naming the key and line. ``san_allow`` holds exact
DNS names, one-label wildcards (``*.keeps.example.com``) and IP addresses; the CA's name
constraints were cut from it at ``motte steward init``, so it can be narrowed here but not
widened past them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motte._toml import parse_table, read_text
from motte.home import motte_home
from motte.steward.errors import StewardConfigError
from motte.store import DatabaseUrl, DatabaseUrlError, parse_database_url, resolve_database

DEFAULT_SAN_ALLOW = ("localhost", "127.0.0.1", "::1")
DEFAULT_CERTIFICATE_LIFETIME = 24 * 3600
DEFAULT_NONCE_LIFETIME = 60
MIN_CERTIFICATE_LIFETIME, MAX_CERTIFICATE_LIFETIME = 60, 7 * 24 * 3600
MIN_NONCE_LIFETIME, MAX_NONCE_LIFETIME = 1, 600
MAX_CONFIG_BYTES = 64 * 1024

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def steward_dir() -> Path:
    return motte_home() / "steward"


@dataclass(frozen=True, slots=True)
class StewardPaths:
    root: Path

    @property
    def ca_key(self) -> Path:
        return self.root / "ca-key.pem"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def policy(self) -> Path:
        return self.root / "policy.toml"

    @property
    def database(self) -> Path:
        return self.root / "steward.db"


# -- SAN patterns ---------------------------------------------------------------------------


def _dns_name(text: str) -> str | None:
    name = text.rstrip(".").lower()
    if not name or len(name) > 253:
        return None
    return name if all(_LABEL.fullmatch(label) for label in name.split(".")) else None


@dataclass(frozen=True, slots=True)
class SanPattern:
    """One entry of ``san_allow``: an exact DNS name, ``*.`` + a domain, or an IP address."""

    text: str
    kind: str  # "dns", "wildcard" or "ip"
    value: str

    @classmethod
    def parse(cls, text: str) -> SanPattern:
        """A pattern from its text; ValueError says why it is not one."""
        if not isinstance(text, str) or not text:
            raise ValueError("an empty name")
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            pass
        else:
            return cls(text, "ip", str(ip))
        if text.startswith("*."):
            domain = _dns_name(text[2:])
            if domain is None or "." not in domain:
                raise ValueError(f"{text!r}: a wildcard is '*.' followed by a domain of 2+ labels")
            return cls(text, "wildcard", domain)
        if "*" in text:
            raise ValueError(f"{text!r}: only a whole leftmost label may be '*'")
        name = _dns_name(text)
        if name is None:
            raise ValueError(f"{text!r} is neither a DNS name nor an IP address")
        return cls(text, "dns", name)

    def matches(self, kind: str, value: str) -> bool:
        """Does a requested SAN (``kind`` "dns" or "ip", normalised ``value``) match?"""
        if kind == "ip":
            return self.kind == "ip" and self.value == value
        if self.kind == "dns":
            return value == self.value
        if self.kind == "wildcard":
            head, _, rest = value.partition(".")
            return bool(head) and rest == self.value
        return False


def normalise_san(kind: str, value: str) -> str | None:
    """A requested SAN in the form patterns compare with, or None if it is malformed."""
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return None
    return _dns_name(value)


# -- config.toml ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StewardConfig:
    san_allow: tuple[SanPattern, ...] = field(
        default_factory=lambda: tuple(SanPattern.parse(s) for s in DEFAULT_SAN_ALLOW)
    )
    certificate_lifetime: int = DEFAULT_CERTIFICATE_LIFETIME
    nonce_lifetime: int = DEFAULT_NONCE_LIFETIME
    online_collateral: bool = False
    unsafe_allow_unbound_enarx_csrs: bool = False
    #: A postgresql:// URL (no password) recorded by ``init --db``; None: steward.db.
    database: str | None = None

    def allowed(self, kind: str, value: str) -> bool:
        return any(p.matches(kind, value) for p in self.san_allow)

    def database_url(self, paths: StewardPaths, flag: str | None = None) -> DatabaseUrl:
        """``--db``, else MOTTE_DB, else ``database`` here, else ``steward.db``."""
        return resolve_database(
            flag,
            default=paths.database,
            recorded=self.database,
            recorded_where=f"{paths.config}: database",
        )

    def to_toml(self) -> str:
        enarx = _toml_bool(self.unsafe_allow_unbound_enarx_csrs)
        sans = ", ".join(f'"{p.text}"' for p in self.san_allow)
        return (
            "# The Steward's settings (docs/keeps.md). Written by `motte steward init`.\n"
            "\n"
            "# Names a Keep may ask for in its certificate: DNS names, *.domain, IP addresses.\n"
            "# Narrow this freely; widening it past the CA's name constraints needs a new CA.\n"
            f"san_allow = [{sans}]\n"
            "\n"
            "# How long an issued Keep certificate is valid, in seconds (60 .. 604800).\n"
            f"certificate_lifetime = {self.certificate_lifetime}\n"
            "\n"
            "# How long a nonce from GET /nonce may be used, in seconds (1 .. 600). Single use.\n"
            f"nonce_lifetime = {self.nonce_lifetime}\n"
            "\n"
            "# Fetch missing collateral (AMD VCEKs and CRLs, Intel TCB info) from the vendors.\n"
            f"online_collateral = {_toml_bool(self.online_collateral)}\n"
            "\n"
            "# Enarx Keep CSRs bind only their key: no workload digest, no nonce (replayable).\n"
            "# Accepting them issues certificates that say nothing about the workload.\n"
            f"unsafe_allow_unbound_enarx_csrs = {enarx}\n"
            + (
                "\n# The PostgreSQL database every replica of this Steward shares (its password\n"
                "# comes from PGPASSWORD or a passfile, never from here). docs/scale.md.\n"
                f'database = "{self.database}"\n'
                if self.database
                else ""
            )
        )


def _toml_bool(value: bool) -> str:
    return "true" if value else "false"


def parse_config(text: str, *, source: str) -> StewardConfig:
    top = parse_table(text, source=source, error=StewardConfigError)
    top.check_keys(StewardConfig.__dataclass_fields__)
    kw: dict[str, Any] = {}
    if top.has("san_allow"):
        value = top.raw("san_allow")
        if not isinstance(value, list) or not value:
            raise top.fail("san_allow", "must be a non-empty list of names")
        try:
            kw["san_allow"] = tuple(SanPattern.parse(v) for v in value)
        except ValueError as e:
            raise top.fail("san_allow", str(e)) from None
    for key, lo, hi in (
        ("certificate_lifetime", MIN_CERTIFICATE_LIFETIME, MAX_CERTIFICATE_LIFETIME),
        ("nonce_lifetime", MIN_NONCE_LIFETIME, MAX_NONCE_LIFETIME),
    ):
        if top.has(key):
            value = top.raw(key)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise top.fail(
                    key, f"must be a whole number of seconds from {lo} to {hi}, not {value!r}"
                )
            kw[key] = value
    if top.has("database"):
        value = top.raw("database")
        if not isinstance(value, str):
            raise top.fail("database", "must be a postgresql:// URL")
        try:
            parse_database_url(value, where="database")
        except DatabaseUrlError as e:
            raise top.fail("database", e.message.removeprefix("database: "), e.hint) from None
        kw["database"] = value
    for key in ("online_collateral", "unsafe_allow_unbound_enarx_csrs"):
        if top.has(key):
            if not isinstance(top.raw(key), bool):
                raise top.fail(key, "must be true or false")
            kw[key] = top.raw(key)
    return StewardConfig(**kw)


def load_config(path: Path) -> StewardConfig:
    text = read_text(
        path, what="Steward config", max_bytes=MAX_CONFIG_BYTES, error=StewardConfigError
    )
    return parse_config(text, source=str(path))
