"""The relying party's attestation policy: a TOML file, strictly read, and its defaults.

Deny by default: the built-in policy accepts SNP, TDX and SGX evidence that verifies, is not
a debug TEE, and (Intel) whose TCB is UpToDate; it refuses ``sim`` evidence and debug TEEs.
Every key a file may hold is listed in :data:`SCHEMA`; an unknown or mistyped key is an
error naming the key and its line. Measurements and digests are hex strings of exact length.
See docs/attestation.md for the reference with examples.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motte.attest.errors import PolicyError

if TYPE_CHECKING:
    from motte._toml import KeyPath

TEE_KINDS = ("snp", "tdx", "sgx", "sim")
INTEL_TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
    # TDX 1.5 quotes: the TD should be relaunched to pick up a TDX module update.
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
)
SNP_TCB_COMPONENTS = ("bootloader", "tee", "snp", "microcode", "fmc")
MAX_POLICY_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class SnpPolicy:
    """SEV-SNP rules. Empty tuples and None mean "not checked"."""

    measurements: tuple[bytes, ...] = ()
    host_data: bytes | None = None
    id_key_digests: tuple[bytes, ...] = ()
    author_key_digests: tuple[bytes, ...] = ()
    #: Minimum REPORTED_TCB components (bootloader, tee, snp, microcode; fmc on Turin).
    min_tcb: Mapping[str, int] = field(default_factory=dict)
    min_guest_svn: int | None = None
    #: The VMPL the report must come from (0 is the most privileged).
    vmpl: int | None = None
    allow_migrate_ma: bool = False
    allow_smt: bool = True
    #: Fail when no CRL of the chain's ARK is at hand (else revocation is skipped and said so).
    require_crl: bool = False


@dataclass(frozen=True, slots=True)
class TdxPolicy:
    mr_td: tuple[bytes, ...] = ()
    rtmr0: bytes | None = None
    rtmr1: bytes | None = None
    rtmr2: bytes | None = None
    rtmr3: bytes | None = None
    mr_seam: tuple[bytes, ...] = ()
    mr_config_id: bytes | None = None
    mr_owner: bytes | None = None
    mr_owner_config: bytes | None = None
    accepted_tcb_statuses: tuple[str, ...] = ("UpToDate",)
    #: When set, every advisory ID the TCB level names must be listed here.
    allowed_advisories: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class SgxPolicy:
    mr_enclave: tuple[bytes, ...] = ()
    mr_signer: tuple[bytes, ...] = ()
    isv_prod_id: int | None = None
    min_isv_svn: int | None = None
    accepted_tcb_statuses: tuple[str, ...] = ("UpToDate",)
    allowed_advisories: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class SimPolicy:
    """Pins for the insecure software keep (only consulted when ``allow_insecure_sim``)."""

    #: Ed25519 public keys (32 bytes) of motte installations whose sim evidence is accepted.
    keys: tuple[bytes, ...] = ()
    measurements: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    """What a relying party accepts. :func:`default_policy` is the built-in one.

    ``allow_insecure_sim`` is the only way to accept ``sim`` evidence: a software keep
    proves nothing about confidentiality or integrity, and the name says so.
    """

    name: str = "default"
    allowed_kinds: tuple[str, ...] = ("snp", "tdx", "sgx")
    allow_debug: bool = False
    allow_insecure_sim: bool = False
    #: Expected REPORT_DATA: up to 64 bytes; shorter values must be followed by zeros.
    report_data: bytes | None = None
    snp: SnpPolicy = field(default_factory=SnpPolicy)
    tdx: TdxPolicy = field(default_factory=TdxPolicy)
    sgx: SgxPolicy = field(default_factory=SgxPolicy)
    sim: SimPolicy = field(default_factory=SimPolicy)
    #: Where the policy came from and the SHA-256 of its bytes: who judged, with what.
    source: str = "built-in default policy"
    sha256: str | None = None

    def __post_init__(self) -> None:
        for k in self.allowed_kinds:
            if k not in TEE_KINDS:
                raise ValueError(f"unknown TEE kind {k!r}")
        if self.report_data is not None and len(self.report_data) > 64:
            raise ValueError("report_data is at most 64 bytes")

    def kind_allowed(self, kind: str) -> bool:
        if kind == "sim":
            return self.allow_insecure_sim
        return kind in self.allowed_kinds

    def with_report_data(self, report_data: bytes | None) -> Policy:
        return self if report_data is None else replace(self, report_data=report_data)

    def ref(self) -> dict[str, Any]:
        """Who judged: the policy's name, source and digest (for verdicts)."""
        return {"name": self.name, "source": self.source, "sha256": self.sha256}


def default_policy() -> Policy:
    """Accept verified SNP/TDX/SGX evidence from non-debug TEEs with an UpToDate TCB."""
    return Policy()


# Loading ---------------------------------------------------------------------------------

_HEX_RE = re.compile(r"^[0-9a-fA-F]*$")


def _loc(ctx: _Ctx, key: str) -> str:
    from motte._toml import location

    return location(ctx.path, ctx.lines, (*ctx.table, *key.split(".")))


@dataclass
class _Ctx:
    path: str
    lines: dict[KeyPath, int]
    table: tuple[str, ...] = ()


def _err(ctx: _Ctx, key: str, reason: str, hint: str | None = None) -> PolicyError:
    return PolicyError(f"{_loc(ctx, key)}: {reason}", hint=hint)


def _hex_value(ctx: _Ctx, key: str, value: Any, sizes: tuple[int, ...]) -> bytes:
    want = " or ".join(str(s) for s in sizes)
    if not isinstance(value, str):
        raise _err(ctx, key, f"must be a hex string of {want} bytes, not {type(value).__name__}")
    text = value.strip().removeprefix("0x")
    if not _HEX_RE.match(text) or len(text) % 2:
        raise _err(ctx, key, f"{value!r} is not hex")
    raw = bytes.fromhex(text)
    if len(raw) not in sizes:
        raise _err(ctx, key, f"{len(raw)} bytes; must be {want}")
    return raw


def _hex(size: int) -> Callable[[_Ctx, str, Any], bytes]:
    return lambda ctx, key, v: _hex_value(ctx, key, v, (size,))


def _hex_list(size: int) -> Callable[[_Ctx, str, Any], tuple[bytes, ...]]:
    def conv(ctx: _Ctx, key: str, v: Any) -> tuple[bytes, ...]:
        if not isinstance(v, list):
            raise _err(ctx, key, f"must be a list of hex strings ({size} bytes each)")
        return tuple(_hex_value(ctx, key, item, (size,)) for item in v)

    return conv


def _report_data(ctx: _Ctx, key: str, v: Any) -> bytes:
    return _hex_value(ctx, key, v, tuple(range(1, 65)))


def _bool(ctx: _Ctx, key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise _err(ctx, key, f"must be true or false, not {v!r}")
    return v


def _int(lo: int, hi: int) -> Callable[[_Ctx, str, Any], int]:
    def conv(ctx: _Ctx, key: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _err(ctx, key, f"must be an integer, not {v!r}")
        if not lo <= v <= hi:
            raise _err(ctx, key, f"{v} is outside {lo}..{hi}")
        return v

    return conv


def _str(ctx: _Ctx, key: str, v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _err(ctx, key, "must be a non-empty string")
    return v


def _choices(allowed: tuple[str, ...]) -> Callable[[_Ctx, str, Any], tuple[str, ...]]:
    def conv(ctx: _Ctx, key: str, v: Any) -> tuple[str, ...]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise _err(ctx, key, "must be a list of strings")
        for x in v:
            if x not in allowed:
                raise _err(ctx, key, f"{x!r} is not one of {', '.join(allowed)}")
        return tuple(v)

    return conv


def _advisories(ctx: _Ctx, key: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise _err(ctx, key, 'must be a list of advisory IDs like "INTEL-SA-00615"')
    return tuple(v)


def _min_tcb(ctx: _Ctx, key: str, v: Any) -> dict[str, int]:
    if not isinstance(v, dict):
        raise _err(
            ctx, key, "must be a table like { bootloader = 3, tee = 0, snp = 8, microcode = 115 }"
        )
    out = {}
    for comp, n in v.items():
        if comp not in SNP_TCB_COMPONENTS:
            raise _err(
                ctx, f"{key}.{comp}", f"unknown TCB component; use {', '.join(SNP_TCB_COMPONENTS)}"
            )
        out[comp] = _int(0, 255)(ctx, f"{key}.{comp}", n)
    return out


_Conv = Callable[[_Ctx, str, Any], Any]
_H48, _H32 = _hex(48), _hex(32)

#: Every key a policy file may hold, per table: key -> converter.
SCHEMA: dict[str, dict[str, _Conv]] = {
    "": {
        "name": _str,
        "allowed_kinds": _choices(("snp", "tdx", "sgx")),
        "allow_debug": _bool,
        "allow_insecure_sim": _bool,
        "report_data": _report_data,
    },
    "snp": {
        "measurements": _hex_list(48),
        "host_data": _H32,
        "id_key_digests": _hex_list(48),
        "author_key_digests": _hex_list(48),
        "min_tcb": _min_tcb,
        "min_guest_svn": _int(0, 0xFFFF_FFFF),
        "vmpl": _int(0, 3),
        "allow_migrate_ma": _bool,
        "allow_smt": _bool,
        "require_crl": _bool,
    },
    "tdx": {
        "mr_td": _hex_list(48),
        "rtmr0": _H48,
        "rtmr1": _H48,
        "rtmr2": _H48,
        "rtmr3": _H48,
        "mr_seam": _hex_list(48),
        "mr_config_id": _H48,
        "mr_owner": _H48,
        "mr_owner_config": _H48,
        "accepted_tcb_statuses": _choices(INTEL_TCB_STATUSES),
        "allowed_advisories": _advisories,
    },
    "sgx": {
        "mr_enclave": _hex_list(32),
        "mr_signer": _hex_list(32),
        "isv_prod_id": _int(0, 0xFFFF),
        "min_isv_svn": _int(0, 0xFFFF),
        "accepted_tcb_statuses": _choices(INTEL_TCB_STATUSES),
        "allowed_advisories": _advisories,
    },
    "sim": {
        "keys": _hex_list(32),
        "measurements": _hex_list(48),
    },
}
_SECTION_TYPES = {"snp": SnpPolicy, "tdx": TdxPolicy, "sgx": SgxPolicy, "sim": SimPolicy}


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    """A Policy from TOML text; raises PolicyError naming the key and line."""
    # The TOML reader loads only when a policy file is read (not for the default policy).
    from motte._toml import Table, key_lines, parse_toml

    data = parse_toml(text, source=source, error=PolicyError)
    ctx = _Ctx(source, key_lines(text))
    Table(data, (), source, PolicyError, ctx.lines).check_keys(
        [*SCHEMA[""], *_SECTION_TYPES],
        hint=f"top-level keys: {', '.join(SCHEMA[''])}; tables: "
        + ", ".join(f"[{t}]" for t in _SECTION_TYPES),
    )
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key in _SECTION_TYPES:
            if not isinstance(value, dict):
                raise _err(ctx, key, f"must be a table [{key}]")
            sections[key] = _convert_table(_Ctx(source, ctx.lines, (key,)), key, value)
        else:
            top[key] = SCHEMA[""][key](ctx, key, value)
    kw: dict[str, Any] = dict(top)
    for name, values in sections.items():
        kw[name] = _SECTION_TYPES[name](**values)
    return Policy(
        **kw,
        source=source,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def _convert_table(ctx: _Ctx, table: str, values: dict[str, Any]) -> dict[str, Any]:
    from motte._toml import Table

    schema = SCHEMA[table]
    Table(values, (table,), ctx.path, PolicyError, ctx.lines).check_keys(
        schema, hint=f"keys in [{table}]: {', '.join(schema)}"
    )
    out = {}
    for key, value in values.items():
        out[key] = schema[key](ctx, key, value)
    return out


def load_policy(path: str | Path) -> Policy:
    """Read a policy file; PolicyError names the file, the key and the line."""
    from motte._toml import read_text

    text = read_text(path, what="policy", max_bytes=MAX_POLICY_BYTES, error=PolicyError)
    return parse_policy(text, source=str(path))
