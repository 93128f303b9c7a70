"""Write or extend an attestation policy that pins computed reference values.

An existing policy is edited as text, never rewritten from its parsed form: its comments,
order and every other rule stay as they were. The edit adds one entry (with comments naming
the inputs and their digests) to ``[snp] measurements`` or ``[tdx] mr_td``, and sets
``rtmr1``/``rtmr2`` when absent. The result is parsed again with motte's own policy reader and
must equal the old policy plus the new pins, or nothing is written.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motte.measure.errors import MeasureError

if TYPE_CHECKING:
    from motte.attest import Policy
    from motte.measure._reference import SnpReference, TdxReference

    Reference = SnpReference | TdxReference

_TABLE_RE = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]\s*(#.*)?$")
_ANY_TABLE_RE = re.compile(r"^\s*\[")


def _pins(ref: Reference) -> tuple[str, list[tuple[str, bytes, bool]]]:
    """The table and its (key, value, is_list) pins for a reference."""
    if ref.tee == "snp":
        return "snp", [("measurements", ref.measurement, True)]  # type: ignore[union-attr]
    pins = [("mr_td", ref.mr_td, True)]  # type: ignore[union-attr]
    for reg in ("rtmr1", "rtmr2"):
        value = getattr(ref, reg)
        if value is not None:
            pins.append((reg, value, False))
    return "tdx", pins


def _comment(ref: Reference) -> list[str]:
    from motte import __version__

    head = f"motte measure {ref.tee} (motte {__version__}):"
    return [head, *("  " + line for line in ref.describe_inputs())]


def _clean(text: str) -> str:
    """One line a TOML comment can hold (command lines may carry anything)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _comment_lines(ref: Reference, indent: str) -> list[str]:
    return [f"{indent}# {_clean(line)}" for line in _comment(ref)]


def _scan_value_end(text: str, start: int) -> tuple[int, int]:
    """For an array value starting at or after ``start``: the index of its closing ']' and
    of the last significant character before it (to know whether a comma is needed)."""
    depth = 0
    i = start
    last = -1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else c
            j = i + len(quote)
            while j < n and text[j : j + len(quote)] != quote:
                j += 2 if quote[0] == '"' and text[j] == "\\" else 1
            last = j + len(quote) - 1
            i = j + len(quote)
            continue
        if c == "[":
            depth += 1
            last = i
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i, last
            last = i
        elif not c.isspace():
            last = i
        i += 1
    raise MeasureError("an array in the policy is not closed")


class _Doc:
    """A policy's lines with where each table starts: just enough structure to insert into."""

    def __init__(self, text: str) -> None:
        self.text = text if text.endswith("\n") or not text else text + "\n"

    def table_span(self, table: str) -> tuple[int, int] | None:
        """Character offsets of ``[table]``'s body: after its header line, to the next table."""
        offset = 0
        start = None
        for line in self.text.splitlines(keepends=True):
            if start is not None and _ANY_TABLE_RE.match(line):
                return start, offset
            m = _TABLE_RE.match(line)
            if m and m.group(1) == table:
                start = offset + len(line)
            offset += len(line)
        return (start, len(self.text)) if start is not None else None

    def key_start(self, span: tuple[int, int], key: str) -> int | None:
        m = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=", re.M).search(self.text, *span)
        return m.end() if m else None

    def insert(self, at: int, s: str) -> None:
        self.text = self.text[:at] + s + self.text[at:]


def _entry(ref: Reference, value: bytes) -> str:
    return "\n".join([*_comment_lines(ref, "    "), f'    "{value.hex()}",']) + "\n"


def _key_block(ref: Reference, key: str, value: bytes, is_list: bool) -> str:
    if is_list:
        return f"{key} = [\n{_entry(ref, value)}]\n"
    return "\n".join([*_comment_lines(ref, ""), f'{key} = "{value.hex()}"']) + "\n"


def _expected(old: Policy, table: str, pins: list[tuple[str, bytes, bool]]) -> Policy:
    section = getattr(old, table)
    changes: dict[str, Any] = {}
    for key, value, is_list in pins:
        cur = getattr(section, key)
        if is_list:
            changes[key] = cur if value in cur else (*cur, value)
        else:
            changes[key] = value
    return replace(old, **{table: replace(section, **changes)})


def _same(a: Policy, b: Policy) -> bool:
    return replace(a, source="", sha256=None) == replace(b, source="", sha256=None)


def extend_policy_text(existing: str | None, ref: Reference, *, source: str) -> tuple[str, bool]:
    """The policy text with ``ref``'s values pinned, and whether anything changed.

    ``existing`` None starts a new policy that allows only ``ref``'s TEE.
    """
    from motte.attest import PolicyError, parse_policy

    table, pins = _pins(ref)
    if existing is None:
        from motte import __version__

        body = "".join(_key_block(ref, k, v, lst) for k, v, lst in pins)
        text = (
            f"# Attestation policy written by `motte measure {ref.tee}` (motte {__version__}).\n"
            "# It accepts only evidence whose launch values are pinned below; the comments\n"
            "# name the inputs they were computed from. Reference: docs/attestation.md,\n"
            "# docs/measure.md.\n"
            f'name = "measured-{ref.tee}"\n'
            f'allowed_kinds = ["{ref.tee}"]\n\n'
            f"[{table}]\n{body}"
        )
        return text, True
    try:
        old = parse_policy(existing, source=source)
    except PolicyError as e:
        raise MeasureError(
            f"cannot extend the policy: {e.message}", hint="fix it or write a new file"
        ) from None
    if ref.tee not in old.allowed_kinds:
        raise MeasureError(
            f"{source}: allowed_kinds ({', '.join(old.allowed_kinds)}) does not include "
            f"{ref.tee}, so a {ref.tee} pin would never be used",
            hint=f"add {ref.tee!r} to allowed_kinds first",
        )
    section = getattr(old, table)
    for key, value, is_list in pins:
        cur = getattr(section, key)
        if not is_list and cur is not None and cur != value:
            raise MeasureError(
                f"{source}: [{table}] {key} is already {cur.hex()}, not {value.hex()}: a policy "
                f"pins one {key.upper()}",
                hint="write this configuration's policy to another file",
            )
    want = _expected(old, table, pins)
    if _same(want, old):
        return existing, False
    doc = _Doc(existing)
    for key, value, is_list in pins:
        cur = getattr(section, key)
        if (value in cur) if is_list else (cur == value):
            continue
        span = doc.table_span(table)
        if span is None:
            if getattr(old, table) != getattr(type(old)(), table):
                raise MeasureError(
                    f"{source}: [{table}] is written as dotted keys or an inline table, which "
                    "motte measure does not edit",
                    hint=f"write it as a [{table}] table, or add the value by hand",
                )
            doc.insert(len(doc.text), f"\n[{table}]\n")
            span = doc.table_span(table)
            assert span is not None
        at = doc.key_start(span, key)
        if at is None:
            doc.insert(span[0], _key_block(ref, key, value, is_list))
            continue
        close, last = _scan_value_end(doc.text, at)
        addition = "\n" + _entry(ref, value)
        if doc.text[last] not in "[,":
            doc.insert(last + 1, ",")
            close += 1
        doc.insert(close, addition)
    new_text = doc.text
    try:
        new = parse_policy(new_text, source=source)
    except PolicyError as e:  # pragma: no cover - a bug in the editor above
        raise MeasureError(f"{source}: extending it would break it ({e.message})") from None
    if not _same(new, want):
        raise MeasureError(
            f"{source}: could not add the values without changing something else; edit by hand"
        )
    return new_text, True


def write_policy(path: str | Path, ref: Reference) -> bool:
    """Write (or extend) the policy at ``path`` atomically; False when already pinned."""
    from motte.fsutil import atomic_write_text

    p = Path(path)
    try:
        existing: str | None = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = None
    except (OSError, UnicodeDecodeError) as e:
        raise MeasureError(f"cannot read the policy {p}: {getattr(e, 'strerror', e)}") from None
    text, changed = extend_policy_text(existing, ref, source=str(p))
    if changed:
        atomic_write_text(p, text)
    return changed
