"""What a workload declares that holds memory: its linear memories and tables, read from the
binary (no compile), so the Keep can bound the whole guest and not only each memory.

wasmtime's store limits (the only limiter its C API offers) bound *each* linear memory and
*each* table, and the *number* of memories, tables and instances in a store; there is no
budget for the store as a whole. So the total is bounded as count x size: the store may hold
exactly the memories and tables the workload declares (more fails to instantiate), each
table at most ``limits.table_elements`` elements, and each memory at most its share of what
``limits.memory`` leaves once the tables' worst case is set aside (``motte.keep._budget``).

A core module is read from its import, table, memory and export sections. A component is
the sum of the core modules it embeds, at any depth (each counted once: instantiating one
twice would need more memories or tables than the store allows, and fails). Whatever this
reader does not understand (a newer encoding) makes it return None, and the Keep then
assumes the worst its limits allow.
"""

from __future__ import annotations

from collections.abc import Iterator

WASM_PAGE = 65536
#: Bytes per table element in wasmtime (a pointer to a function reference, or a GC
#: reference in a pointer-sized slot).
TABLE_ELEMENT_BYTES = 8

_MODULE_PREAMBLE = b"\0asm\x01\x00\x00\x00"
_COMPONENT_PREAMBLE_VERSION = b"\x0d\x00\x01\x00"
_IMPORT, _TABLE, _MEMORY, _EXPORT = 2, 4, 5, 7
_EXTERN_TABLE, _EXTERN_MEMORY = 1, 2
_CORE_MODULE_SECTION, _COMPONENT_SECTION = 1, 4


class Unreadable(Exception):
    """An encoding this reader does not know."""


class Declared:
    """A workload's memories and tables: each as (minimum, maximum or None), memories in
    bytes, tables in elements; and, for a core module, the names their exports have."""

    __slots__ = ("exported_memories", "exported_tables", "memories", "tables")

    def __init__(self) -> None:
        self.memories: list[tuple[int, int | None]] = []
        self.tables: list[tuple[int, int | None]] = []
        #: Index -> export name (core modules only; a component's are its own).
        self.exported_memories: dict[int, str] = {}
        self.exported_tables: dict[int, str] = {}

    def add(self, other: Declared) -> None:
        self.memories += other.memories
        self.tables += other.tables


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise Unreadable("unexpected end")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uleb(self, bits: int = 32) -> int:
        value = shift = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift >= bits + 7:
                raise Unreadable("LEB128 number too long")

    def sleb33(self) -> int:
        value = shift = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                if b & 0x40:
                    value -= 1 << shift
                return value
            if shift > 35:
                raise Unreadable("LEB128 number too long")

    def name(self) -> str:
        size = self.uleb()
        if self.pos + size > self.end:
            raise Unreadable("name past the end")
        text = self.data[self.pos : self.pos + size]
        self.pos += size
        return text.decode("utf-8", errors="replace")

    def limits(self, *, memory: bool) -> tuple[int, int | None]:
        flags = self.byte()
        if flags & ~0x07:  # custom page sizes (0x08) and anything newer
            raise Unreadable(f"limits flags {flags:#x}")
        wide = 64 if flags & 0x04 else 32
        low = self.uleb(wide)
        high = self.uleb(wide) if flags & 0x01 else None
        if memory:
            return low * WASM_PAGE, None if high is None else high * WASM_PAGE
        return low, high

    def reftype(self) -> None:
        b = self.byte()
        if b in (0x63, 0x64):  # (ref null? heaptype)
            self.sleb33()
        elif not 0x69 <= b <= 0x74:
            raise Unreadable(f"reference type {b:#x}")

    def valtype(self) -> None:
        b = self.data[self.pos] if self.pos < self.end else -1
        if b in (0x7F, 0x7E, 0x7D, 0x7C, 0x7B):
            self.pos += 1
        else:
            self.reftype()

    def sections(self) -> Iterator[tuple[int, _Reader]]:
        while self.pos < self.end:
            section = self.byte()
            size = self.uleb()
            start = self.pos
            if start + size > self.end:
                raise Unreadable("section past the end")
            self.pos = start + size
            yield section, _Reader(self.data, start, start + size)


def _module(data: bytes, start: int, end: int) -> Declared:
    out = Declared()
    if data[start : start + 8] != _MODULE_PREAMBLE:
        raise Unreadable("not a core module")
    imported_tables = imported_memories = 0
    for section, r in _Reader(data, start + 8, end).sections():
        if section == _IMPORT:
            for _ in range(r.uleb()):
                r.name()
                r.name()
                kind = r.byte()
                if kind == 0x00:  # function: type index
                    r.uleb()
                elif kind == _EXTERN_TABLE:
                    r.reftype()
                    out.tables.append(r.limits(memory=False))
                    imported_tables += 1
                elif kind == _EXTERN_MEMORY:
                    out.memories.append(r.limits(memory=True))
                    imported_memories += 1
                elif kind == 0x03:  # global: value type, mutability
                    r.valtype()
                    r.byte()
                elif kind == 0x04:  # tag: attribute, type index
                    r.byte()
                    r.uleb()
                else:
                    raise Unreadable(f"import kind {kind:#x}")
        elif section == _TABLE:
            for _ in range(r.uleb()):
                if r.data[r.pos : r.pos + 1] == b"\x40":  # a table with an initialiser
                    raise Unreadable("table with an initialiser expression")
                r.reftype()
                out.tables.append(r.limits(memory=False))
        elif section == _MEMORY:
            for _ in range(r.uleb()):
                out.memories.append(r.limits(memory=True))
        elif section == _EXPORT:
            for _ in range(r.uleb()):
                name = r.name()
                kind = r.byte()
                index = r.uleb()
                if kind == _EXTERN_MEMORY:
                    out.exported_memories.setdefault(index, name)
                elif kind == _EXTERN_TABLE:
                    out.exported_tables.setdefault(index, name)
    return out


def _component(data: bytes, start: int, end: int, depth: int) -> Declared:
    if depth > 16:
        raise Unreadable("components nested too deeply")
    if data[start + 4 : start + 8] != _COMPONENT_PREAMBLE_VERSION:
        raise Unreadable("not a component")
    out = Declared()
    for section, r in _Reader(data, start + 8, end).sections():
        if section == _CORE_MODULE_SECTION:
            out.add(_module(data, r.pos, r.end))
        elif section == _COMPONENT_SECTION:
            out.add(_component(data, r.pos, r.end, depth + 1))
    return out


def declared(data: bytes, kind: str) -> Declared | None:
    """The memories and tables ``data`` (a ``module`` or ``component``) declares, or None
    when its encoding is not one this reader knows."""
    try:
        if kind == "module":
            return _module(data, 0, len(data))
        return _component(data, 0, len(data), 0)
    except (Unreadable, IndexError):
        return None


# -- the store's budget ------------------------------------------------------------------------


class BudgetError(Exception):
    """The workload cannot fit its limits: ``message`` names the limit, ``hint`` the fix."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class Budget:
    """The store limits that keep a whole guest within ``limits.memory``: the count of
    memories and tables it may hold, each memory's bytes and each table's elements."""

    __slots__ = ("instances", "memories", "memory_size", "table_elements", "tables")

    def __init__(
        self, *, memory_size: int, table_elements: int, instances: int, tables: int, memories: int
    ) -> None:
        self.memory_size = memory_size
        self.table_elements = table_elements
        self.instances = instances
        self.tables = tables
        self.memories = memories


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _size(n: int) -> str:
    if n >= 2**20:
        return _mib(n)
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} bytes"


def store_budget(shape: Declared | None, limits: object, kind: str) -> Budget:
    """The store limits for a workload of ``shape`` (None: unknown, assume the worst the
    count limits allow) under ``limits`` (a :class:`motte.manifest.Limits`).

    Tables are set aside first, at their worst case (each table's maximum, or
    ``limits.table_elements`` when it has none, times :data:`TABLE_ELEMENT_BYTES`); what is
    left of ``limits.memory`` is shared equally by the memories. The store may hold no more
    memories or tables than counted, so their sum stays within ``limits.memory``.
    """
    total: int = limits.memory * 2**20  # type: ignore[attr-defined]
    cap: int = limits.table_elements  # type: ignore[attr-defined]
    max_memories: int = limits.memories  # type: ignore[attr-defined]
    max_tables: int = limits.tables  # type: ignore[attr-defined]
    what = "module" if kind == "module" else "component"
    if shape is None:
        memories, tables = max_memories, max_tables
        table_bytes = tables * cap * TABLE_ELEMENT_BYTES
        need = 0
    else:
        memories, tables = len(shape.memories), len(shape.tables)
        if memories > max_memories:
            raise BudgetError(
                f"the {what} declares {memories} linear memories, more than limits.memories "
                f"= {max_memories}",
                "raise limits.memories in Motte.toml",
            )
        if tables > max_tables:
            raise BudgetError(
                f"the {what} declares {tables} tables, more than limits.tables = {max_tables}",
                "raise limits.tables in Motte.toml",
            )
        caps = []
        for low, high in shape.tables:
            if low > cap:
                raise BudgetError(
                    f"the {what} needs a table of {low} elements at start, more than "
                    f"limits.table_elements = {cap}",
                    "raise limits.table_elements in Motte.toml",
                )
            caps.append(cap if high is None else min(high, cap))
        # A module's tables are its own; a component's core modules could be instantiated
        # in another mix than declared, so each of its tables may be the largest.
        worst = sum(caps) if kind == "module" else tables * max(caps, default=0)
        table_bytes = worst * TABLE_ELEMENT_BYTES
        need = max((low for low, _ in shape.memories), default=0)
    left = total - table_bytes
    each = left // memories if memories else 0
    if left < 0 or need > each:
        if shape is not None and memories <= 1 and table_bytes < WASM_PAGE:
            message = (
                f"the {what} needs {_mib(need)} of memory at start, more than limits.memory "
                f"= {limits.memory} MiB"  # type: ignore[attr-defined]
            )
        else:
            message = (
                f"the {what} needs {_size(need)} at start in one of its {memories} linear "
                f"memories: limits.memory = {limits.memory} MiB, less its {tables} tables "  # type: ignore[attr-defined]
                f"(up to {_size(table_bytes)}), leaves {_size(max(each, 0))} to each memory"
            )
        raise BudgetError(
            message, "raise limits.memory (or --memory), or lower limits.table_elements"
        )
    return Budget(
        memory_size=max(each, 0),
        table_elements=cap,
        instances=limits.instances,  # type: ignore[attr-defined]
        tables=tables,
        memories=memories,
    )


# -- every memory and table exported, so that what the guest holds can be read -----------


def _uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _vec_name(name: str) -> bytes:
    raw = name.encode()
    return _uleb(len(raw)) + raw


#: Sections that come after the export section in a module, in their order of appearance.
_AFTER_EXPORT = frozenset({8, 9, 10, 11, 12})
HIDDEN_MEMORY = "motte:memory:"
HIDDEN_TABLE = "motte:table:"


def hidden(shape: Declared) -> tuple[list[int], list[int]]:
    """The memories, and the tables that can grow, that ``shape`` (a module) does not
    export: what the Keep cannot measure after a run without exporting them."""
    memories = [i for i in range(len(shape.memories)) if i not in shape.exported_memories]
    tables = [
        i
        for i, (low, high) in enumerate(shape.tables)
        if i not in shape.exported_tables and high != low
    ]
    return memories, tables


def export_everything(data: bytes, shape: Declared) -> bytes:
    """``data`` (a core module) with an export for every memory and growable table it keeps
    to itself (``motte:memory:N``, ``motte:table:N``; a guest cannot see its own exports):
    the same program, whose every byte of memory the Keep can then count."""
    memories, tables = hidden(shape)
    extra = [
        _vec_name(f"{HIDDEN_MEMORY}{i}") + bytes([_EXTERN_MEMORY]) + _uleb(i) for i in memories
    ]
    extra += [_vec_name(f"{HIDDEN_TABLE}{i}") + bytes([_EXTERN_TABLE]) + _uleb(i) for i in tables]
    out = bytearray(data[:8])
    done = False
    for section, r in _Reader(data, 8).sections():
        if section == _EXPORT and not done:
            count = r.uleb()
            body = _uleb(count + len(extra)) + data[r.pos : r.end] + b"".join(extra)
            out += bytes([_EXPORT]) + _uleb(len(body)) + body
            done = True
            continue
        if section in _AFTER_EXPORT and not done:
            body = _uleb(len(extra)) + b"".join(extra)
            out += bytes([_EXPORT]) + _uleb(len(body)) + body
            done = True
        start = r.pos
        # The section as it was: its id, its size, its bytes.
        out += bytes([section]) + _uleb(r.end - start) + data[start : r.end]
    if not done:
        body = _uleb(len(extra)) + b"".join(extra)
        out += bytes([_EXPORT]) + _uleb(len(body)) + body
    return bytes(out)
