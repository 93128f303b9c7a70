"""Canonical JSON for signed documents: RFC 8785 (JCS) for the values motte signs.

Objects' keys sorted by UTF-16 code units, no insignificant whitespace, strings escaped as
ECMAScript does, integers only. Floats are refused rather than canonicalised: no signed motte
document needs one, and number formatting is where canonical JSON implementations disagree.
"""

from __future__ import annotations

import json
from typing import Any

from motte.sign._errors import EnvelopeFormatError

_MAX_SAFE_INT = 2**53 - 1


def canonical_json(value: Any) -> bytes:
    try:
        return _encode(value).encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate: not representable in UTF-8 JSON
        raise EnvelopeFormatError(f"string is not valid Unicode: {e.reason}") from e


def _utf16_key(s: str) -> bytes:
    return s.encode("utf-16-be")


def _encode(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > _MAX_SAFE_INT:
            raise EnvelopeFormatError(f"integer {value} is outside the range JSON keeps exactly")
        return str(value)
    if isinstance(value, float):
        raise EnvelopeFormatError("floating-point numbers are not allowed in signed documents")
    if isinstance(value, str):
        # json.dumps escapes exactly as JCS does when non-ASCII is left alone: \" \\ \b \f
        # \n \r \t and \u00XX for other controls (lowercase hex).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise EnvelopeFormatError(f"object key {k!r} is not a string")
        items = sorted(value.items(), key=lambda kv: _utf16_key(kv[0]))
        return "{" + ",".join(_encode(k) + ":" + _encode(v) for k, v in items) + "}"
    raise EnvelopeFormatError(f"cannot canonicalise a {type(value).__name__}")
