"""configfs-tsm captures: the Linux report interface's ``provider``, ``outblob``, ``auxblob``.

On Linux 6.7+ a guest makes ``/sys/kernel/config/tsm/report/<name>``, writes REPORT_DATA to
``inblob`` and reads ``outblob`` (the SNP report or the whole TDX quote), ``auxblob`` (SEV
only: the certificate table) and ``provider`` ("sev_guest", "tdx_guest"). A capture is those
attributes saved for a verifier, either as a directory of the same files or as JSON with the
binary attributes in base64url, the form Veraison's sevsnp scheme accepts
(``application/vnd.veraison.tsm-report+json``)::

    {"provider": "sev_guest", "outblob": "<base64url>", "auxblob": "<base64url>"}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motte.attest._evidence import MAX_EVIDENCE_BYTES, _b64, _unb64
from motte.attest.errors import EvidenceParseError

STRUCTURE = "configfs-tsm capture"
#: provider -> the TEE kind of its outblob.
PROVIDERS = {"sev_guest": "snp", "tdx_guest": "tdx"}
_OPTIONAL_TEXT = ("generation", "privlevel", "privlevel_floor", "service_provider")
_KNOWN = {"provider", "outblob", "auxblob", "manifestblob", *_OPTIONAL_TEXT}


@dataclass(frozen=True, slots=True)
class TsmCapture:
    provider: str
    outblob: bytes
    auxblob: bytes | None = None
    generation: int | None = None

    @property
    def kind(self) -> str:
        return PROVIDERS[self.provider]

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"provider": self.provider, "outblob": _b64(self.outblob)}
        if self.auxblob is not None:
            doc["auxblob"] = _b64(self.auxblob)
        if self.generation is not None:
            doc["generation"] = self.generation
        return json.dumps(doc, sort_keys=True).encode() + b"\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "kind": self.kind,
            "outblob_bytes": len(self.outblob),
            "auxblob_bytes": len(self.auxblob) if self.auxblob is not None else None,
            "generation": self.generation,
        }


def _provider(value: Any) -> str:
    if not isinstance(value, str):
        raise EvidenceParseError(STRUCTURE, "provider", "must be a string")
    name = value.strip()  # the sysfs attribute ends with a newline
    if name not in PROVIDERS:
        raise EvidenceParseError(
            STRUCTURE, "provider", f"{name!r} is not one of {', '.join(PROVIDERS)}"
        )
    return name


def parse_tsm_capture(data: bytes) -> TsmCapture:
    """A capture from its JSON form; raises EvidenceParseError naming the field."""
    if len(data) > MAX_EVIDENCE_BYTES:
        raise EvidenceParseError(STRUCTURE, "length", f"{len(data)} bytes is too large")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        pos = getattr(e, "pos", None) or getattr(e, "start", None)
        raise EvidenceParseError(STRUCTURE, "JSON", f"not valid JSON: {e}", offset=pos) from None
    except RecursionError:  # "[[[[..." deeper than the decoder's stack: not a capture either
        raise EvidenceParseError(STRUCTURE, "JSON", "nested too deeply to be a capture") from None
    if not isinstance(doc, dict):
        raise EvidenceParseError(STRUCTURE, "JSON", "must be an object")
    unknown = sorted(set(doc) - _KNOWN)
    if unknown:
        raise EvidenceParseError(STRUCTURE, unknown[0], "unknown attribute")
    if "provider" not in doc or "outblob" not in doc:
        missing = "provider" if "provider" not in doc else "outblob"
        raise EvidenceParseError(STRUCTURE, missing, "is missing")
    provider = _provider(doc["provider"])
    outblob = _unb64(doc["outblob"], "outblob", STRUCTURE)
    auxblob = _unb64(doc["auxblob"], "auxblob", STRUCTURE) if doc.get("auxblob") else None
    generation = doc.get("generation")
    if generation is not None and (isinstance(generation, bool) or not isinstance(generation, int)):
        raise EvidenceParseError(STRUCTURE, "generation", "must be an integer")
    return _checked(TsmCapture(provider, outblob, auxblob, generation))


def read_tsm_capture_dir(path: str | Path) -> TsmCapture:
    """A capture from a directory holding ``provider``, ``outblob`` and maybe ``auxblob``.

    That is a configfs-tsm report directory itself, or a copy of one.
    """
    d = Path(path)

    def read(name: str) -> bytes | None:
        p = d / name
        try:
            if p.stat().st_size > MAX_EVIDENCE_BYTES:
                raise EvidenceParseError(STRUCTURE, name, "file is too large")
            return p.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise EvidenceParseError(STRUCTURE, name, f"cannot read {p}: {e.strerror}") from None

    provider_raw = read("provider")
    outblob = read("outblob")
    if provider_raw is None or outblob is None:
        missing = "provider" if provider_raw is None else "outblob"
        raise EvidenceParseError(STRUCTURE, missing, f"{d / missing} does not exist")
    provider = _provider(provider_raw.decode("utf-8", "replace"))
    auxblob = read("auxblob") or None
    gen_raw = read("generation")
    generation = None
    if gen_raw is not None:
        try:
            generation = int(gen_raw.strip())
        except ValueError:
            raise EvidenceParseError(STRUCTURE, "generation", "is not an integer") from None
    return _checked(TsmCapture(provider, outblob, auxblob, generation))


def _checked(c: TsmCapture) -> TsmCapture:
    if not c.outblob:
        raise EvidenceParseError(STRUCTURE, "outblob", "is empty")
    if c.auxblob is not None and c.provider != "sev_guest":
        raise EvidenceParseError(STRUCTURE, "auxblob", f"unexpected for provider {c.provider}")
    return c
