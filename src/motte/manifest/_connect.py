"""``[[connect]]``: the destinations a workload asks to call, and the TLS it asks for.

A destination is a name the guest opens it by, a host and a port:

    [[connect]]
    name = "vendor"
    host = "api.vendor.example"
    port = 443
    # tls = true                      the default: the Keep speaks TLS, verifying the server

    [connect.tls]                     # settings for the expert, all optional
    min_version = "1.2"               # "1.2" or "1.3" (older only with unsafe_legacy_tls)
    max_version = "1.3"
    tls12_ciphers = ["ECDHE-ECDSA-AES128-GCM-SHA256"]   # OpenSSL names
    tls13_ciphers = ["TLS_AES_128_GCM_SHA256"]
    groups = ["X25519", "P-256"]
    alpn = ["http/1.1"]
    server_name = "api.vendor.example"                  # default: host
    pin_spki = ["sha256:<hex>"]                         # and/or pin_certificate

``tls`` is ``true`` (the default), a table of these settings (TLS on), or ``false``:
plain text, which a Keep allows only to a loopback test peer and names loudly. The two
insecure choices, ``unsafe_legacy_tls`` (TLS 1.0/1.1, suites without forward secrecy or an
AEAD) and ``unsafe_skip_verification`` (no CA or name check), must be named here *and*
granted by the host (``motte.manifest._grants``).

Everything is checked when the manifest is read, from tables of names OpenSSL knows: a
malformed setting is one line naming its key (``Motte.toml:9: connect[0].tls.groups[1]:
unknown group 'P-255' (known: ...)``). Which destinations a guest may reach is the host's
decision (grants); this module only reads what the manifest asks for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from motte._record import Record
from motte._toml import Invalid, KeyPath, check_keys

#: Protocol versions by their manifest spelling, oldest first.
TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
#: What a Keep offers at least and at most unless the manifest says otherwise.
DEFAULT_MIN_VERSION = "1.2"
DEFAULT_MAX_VERSION = "1.3"
#: TLS 1.2 suites with forward secrecy and an AEAD: all a Keep offers without
#: unsafe_legacy_tls (OpenSSL names; ``openssl ciphers -v`` lists them).
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
)
TLS13_CIPHERS = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
)
#: Key-exchange groups by OpenSSL's names.
GROUPS = (
    "X25519",
    "X448",
    "P-256",
    "P-384",
    "P-521",
    "ffdhe2048",
    "ffdhe3072",
    "ffdhe4096",
    "ffdhe6144",
    "ffdhe8192",
)
#: Bounds on lists a manifest may give (each is a handful in practice).
MAX_LIST = 16
#: A destination name, as the guest opens it: the names of [[dir]] and [[listen]].
_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_PIN = re.compile(r"sha256:[0-9a-f]{64}")
_LEGACY_CIPHER = re.compile(r"[A-Z0-9][A-Z0-9-]{2,63}")


class TlsSettings(Record):
    """What a Keep's TLS client does for one destination (the defaults: TLS 1.2 or 1.3,
    forward-secret AEAD suites, the server verified against the granted CA bundle and its
    name). Empty tuples mean OpenSSL's defaults within those bounds."""

    __slots__ = (
        "alpn",
        "groups",
        "max_version",
        "min_version",
        "pin_certificate",
        "pin_spki",
        "server_name",
        "tls12_ciphers",
        "tls13_ciphers",
        "unsafe_legacy_tls",
        "unsafe_skip_verification",
    )
    min_version: str
    max_version: str
    tls12_ciphers: tuple[str, ...]
    tls13_ciphers: tuple[str, ...]
    groups: tuple[str, ...]
    alpn: tuple[str, ...]
    server_name: str | None
    pin_spki: tuple[str, ...]
    pin_certificate: tuple[str, ...]
    unsafe_legacy_tls: bool
    unsafe_skip_verification: bool

    def __init__(
        self,
        *,
        min_version: str = DEFAULT_MIN_VERSION,
        max_version: str = DEFAULT_MAX_VERSION,
        tls12_ciphers: tuple[str, ...] = (),
        tls13_ciphers: tuple[str, ...] = (),
        groups: tuple[str, ...] = (),
        alpn: tuple[str, ...] = (),
        server_name: str | None = None,
        pin_spki: tuple[str, ...] = (),
        pin_certificate: tuple[str, ...] = (),
        unsafe_legacy_tls: bool = False,
        unsafe_skip_verification: bool = False,
    ) -> None:
        self._set(
            min_version=min_version,
            max_version=max_version,
            tls12_ciphers=tuple(tls12_ciphers),
            tls13_ciphers=tuple(tls13_ciphers),
            groups=tuple(groups),
            alpn=tuple(alpn),
            server_name=server_name,
            pin_spki=tuple(pin_spki),
            pin_certificate=tuple(pin_certificate),
            unsafe_legacy_tls=unsafe_legacy_tls,
            unsafe_skip_verification=unsafe_skip_verification,
        )

    @property
    def unsafe(self) -> tuple[str, ...]:
        """The insecure choices named, as the host grants them."""
        return tuple(
            name
            for name, on in (
                ("unsafe_legacy_tls", self.unsafe_legacy_tls),
                ("unsafe_skip_verification", self.unsafe_skip_verification),
            )
            if on
        )


DEFAULT_TLS = TlsSettings()


class Connect(Record):
    """A destination the workload may open by ``name``: ``host`` and ``port`` as the
    manifest asks, ``tls`` its settings (None: plain text, loopback only).

    What the host's grant decides (:func:`motte.manifest.apply_grants`): ``address`` and
    ``port``, where the Keep connects instead (None: ``host``, resolved then); ``ca``, the
    CA bundle the server is verified against (None: the system's roots); ``loopback``,
    whether this host's loopback may be reached (only when an address says so in as many
    characters); ``unsafe``, the insecure choices the host consents to. TLS always names
    and verifies ``tls.server_name`` or, by default, ``host``."""

    __slots__ = ("address", "ca", "host", "loopback", "name", "port", "tls", "unsafe", "where")
    _uncompared = frozenset({"where"})
    name: str
    host: str
    port: int
    tls: TlsSettings | None
    where: str
    address: str | None
    ca: Path | None
    loopback: bool
    unsafe: frozenset[str]

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        tls: TlsSettings | None = DEFAULT_TLS,
        where: str = "",
        *,
        address: str | None = None,
        ca: Path | None = None,
        loopback: bool = False,
        unsafe: frozenset[str] = frozenset(),
    ) -> None:
        self._set(
            name=name,
            host=host,
            port=port,
            tls=tls,
            where=where,
            address=address,
            ca=ca,
            loopback=loopback,
            unsafe=frozenset(unsafe),
        )

    @property
    def dial_host(self) -> str:
        """Where the Keep connects: the granted address, else the manifest's host."""
        return self.address if self.address is not None else self.host

    @property
    def server_name(self) -> str:
        """The name TLS sends (SNI, unless an IP address) and verifies."""
        if self.tls is not None and self.tls.server_name is not None:
            return self.tls.server_name
        return self.host

    def describe(self) -> str:
        """``api.vendor.example:443 (TLS)``; ``... via 127.0.0.1:8443`` when a grant moved it."""
        mode = "PLAIN TEXT" if self.tls is None else "TLS"
        if self.address is None:
            return f"{_host_port(self.host, self.port)} ({mode})"
        return f"{self.host} via {_host_port(self.address, self.port)} ({mode})"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets."""
    return _host_port(host, port)


# -- validation ---------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), "an array" if isinstance(value, list) else "a table"
    )
    shown = repr(value) if isinstance(value, (bool, int, float, str)) else ""
    return f"{kind} {shown}".strip() if len(shown) <= 40 else kind


def check_host(value: Any, path: KeyPath, what: str = "host") -> str:
    """A DNS name (letters, digits, '-', dots; no trailing dot) or an IP address literal."""
    if not isinstance(value, str):
        raise Invalid(path, f"expected a {what} name or IP address, got {_describe(value)}")
    import ipaddress

    text = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    labels = text.split(".")
    if len(text) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise Invalid(
            path,
            f"{value!r} is not a {what} name or IP address",
            hint="a DNS name such as api.example.com (ASCII; punycode for others), or an "
            "address such as 10.0.0.5 or ::1",
        )
    return text.lower()


def check_port(value: Any, path: KeyPath) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Invalid(path, f"expected a port from 1 to 65535, got {_describe(value)}")
    return value


def _str_list(value: Any, path: KeyPath, what: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(path, f"expected an array of {what}, got {_describe(value)}")
    if not value:
        raise Invalid(path, "is empty (leave the key out for the default)")
    if len(value) > MAX_LIST:
        raise Invalid(path, f"at most {MAX_LIST} {what}, got {len(value)}")
    for i, v in enumerate(value):
        if v in value[:i]:
            raise Invalid((*path, i), f"{v!r} is listed twice")
    return value


def _one_of(items: list[str], known: tuple[str, ...], path: KeyPath, what: str) -> tuple[str, ...]:
    for i, item in enumerate(items):
        if item not in known:
            import difflib

            close = difflib.get_close_matches(item, known, n=1)
            raise Invalid(
                (*path, i),
                f"unknown {what} {item!r} (known: {', '.join(known)})",
                hint=f"did you mean {close[0]!r}?" if close else None,
            )
    return tuple(items)


def _version(value: Any, path: KeyPath, legacy: bool) -> str:
    if not isinstance(value, str) or value not in TLS_VERSIONS:
        raise Invalid(path, f'expected "1.2" or "1.3", got {_describe(value)}')
    if value in ("1.0", "1.1") and not legacy:
        raise Invalid(
            path,
            f"TLS {value} is refused: it is broken (RFC 8996)",
            hint="a peer that speaks nothing newer needs unsafe_legacy_tls = true here, and the "
            "host's grant of it (--grant connect:NAME=unsafe_legacy_tls)",
        )
    return value


def _tls12_ciphers(value: Any, path: KeyPath, legacy: bool) -> tuple[str, ...]:
    items = _str_list(value, path, "TLS 1.2 cipher suites (OpenSSL names)")
    if legacy:
        for i, item in enumerate(items):
            if not _LEGACY_CIPHER.fullmatch(item):
                raise Invalid((*path, i), f"{item!r} is not an OpenSSL cipher suite name")
        return tuple(items)
    for i, item in enumerate(items):
        if item not in TLS12_CIPHERS:
            import difflib

            close = difflib.get_close_matches(item, TLS12_CIPHERS, n=1)
            raise Invalid(
                (*path, i),
                f"{item!r} is not offered: a Keep offers TLS 1.2 suites with forward secrecy "
                f"and an AEAD only ({', '.join(TLS12_CIPHERS)})",
                hint=f"did you mean {close[0]!r}?"
                if close
                else "an older suite needs unsafe_legacy_tls = true and the host's grant",
            )
    return tuple(items)


def _alpn(value: Any, path: KeyPath) -> tuple[str, ...]:
    items = _str_list(value, path, "protocol names")
    for i, item in enumerate(items):
        if not 1 <= len(item.encode()) <= 255 or not item.isascii() or not item.isprintable():
            raise Invalid((*path, i), f"{item!r}: a protocol name is 1 to 255 printable ASCII")
    return tuple(items)


def _pins(value: Any, path: KeyPath) -> tuple[str, ...]:
    items = _str_list(value, path, 'pins ("sha256:<64 hex digits>")')
    for i, item in enumerate(items):
        if not _PIN.fullmatch(item):
            raise Invalid(
                (*path, i),
                f"{item!r}: expected sha256: and 64 lower-case hex digits",
                hint="e.g. openssl x509 -in server.pem -pubkey -noout | openssl pkey -pubin "
                "-outform DER | sha256sum (pin_spki), or the certificate's DER for "
                "pin_certificate",
            )
    return tuple(items)


def _bool(table: dict[str, Any], key: str, path: KeyPath) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise Invalid((*path, key), f"expected true or false, got {_describe(value)}")
    return value


_TLS_KEYS = (
    "alpn",
    "groups",
    "max_version",
    "min_version",
    "pin_certificate",
    "pin_spki",
    "server_name",
    "tls12_ciphers",
    "tls13_ciphers",
    "unsafe_legacy_tls",
    "unsafe_skip_verification",
)


def tls_settings(value: Any, path: KeyPath) -> TlsSettings | None:
    """``tls = true | false | { ... }`` -> the settings (None for plain text)."""
    if value is True:
        return DEFAULT_TLS
    if value is False:
        return None
    if not isinstance(value, dict):
        raise Invalid(path, f"expected true, false or a table of settings, got {_describe(value)}")
    check_keys(value, _TLS_KEYS, path)
    legacy = _bool(value, "unsafe_legacy_tls", path)
    skip = _bool(value, "unsafe_skip_verification", path)
    low = _version(value.get("min_version", DEFAULT_MIN_VERSION), (*path, "min_version"), legacy)
    high = _version(value.get("max_version", DEFAULT_MAX_VERSION), (*path, "max_version"), legacy)
    if TLS_VERSIONS.index(low) > TLS_VERSIONS.index(high):
        raise Invalid((*path, "max_version"), f"{high} is older than min_version {low}")
    out: dict[str, Any] = {}
    if "tls12_ciphers" in value:
        if low == "1.3":
            raise Invalid((*path, "tls12_ciphers"), "is set, but min_version is 1.3")
        where = (*path, "tls12_ciphers")
        out["tls12_ciphers"] = _tls12_ciphers(value["tls12_ciphers"], where, legacy)
    if "tls13_ciphers" in value:
        if high != "1.3":
            raise Invalid((*path, "tls13_ciphers"), f"is set, but max_version is {high}")
        items = _str_list(value["tls13_ciphers"], (*path, "tls13_ciphers"), "TLS 1.3 suites")
        out["tls13_ciphers"] = _one_of(items, TLS13_CIPHERS, (*path, "tls13_ciphers"), "suite")
    if "groups" in value:
        items = _str_list(value["groups"], (*path, "groups"), "group names")
        out["groups"] = _one_of(items, GROUPS, (*path, "groups"), "group")
    if "alpn" in value:
        out["alpn"] = _alpn(value["alpn"], (*path, "alpn"))
    if "server_name" in value:
        out["server_name"] = check_host(value["server_name"], (*path, "server_name"), "server")
    for key in ("pin_spki", "pin_certificate"):
        if key in value:
            out[key] = _pins(value[key], (*path, key))
    return TlsSettings(
        min_version=low,
        max_version=high,
        unsafe_legacy_tls=legacy,
        unsafe_skip_verification=skip,
        **out,
    )


def connect_entries(value: Any, path: KeyPath, where: Any) -> tuple[Connect, ...]:
    """The ``[[connect]]`` array -> destinations; ``where(path)`` names a location."""
    if not isinstance(value, list):
        raise Invalid(path, f"expected an array of tables ([[connect]]), got {_describe(value)}")
    out: list[Connect] = []
    for i, table in enumerate(value):
        p = (*path, i)
        if not isinstance(table, dict):
            raise Invalid(p, f"expected a table, got {_describe(table)}")
        check_keys(table, {"name", "host", "port", "tls"}, p)
        for key in ("name", "host", "port"):
            if key not in table:
                raise Invalid(p, f"missing required key {key!r}")
        name = table["name"]
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise Invalid((*p, "name"), f"{name!r}: use 1 to 63 letters, digits, '-' or '_'")
        host = check_host(table["host"], (*p, "host"))
        port = check_port(table["port"], (*p, "port"))
        tls = tls_settings(table.get("tls", True), (*p, "tls"))
        for j, other in enumerate(out):
            if other.name == name:
                raise Invalid((*p, "name"), f"destination name {name!r} is already used by [{j}]")
        out.append(Connect(name, host, port, tls, where=where(p)))
    return tuple(out)
