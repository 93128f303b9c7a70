"""Read a Motte.toml, or make the empty manifest for a bare module, or resolve what
``motte run`` was pointed at (a module, a manifest, a directory holding one, or a digest)."""

from __future__ import annotations

import os
from pathlib import Path

from motte._digest import check_digest
from motte.errors import NotFoundError, UsageError
from motte.manifest._errors import ManifestError
from motte.manifest._model import MANIFEST_NAME, Manifest, Workload

#: Bound on a manifest's size: a manifest is a page of TOML, not a data file.
MAX_MANIFEST_BYTES = 1024 * 1024
WASM_MAGIC = b"\0asm"


def _display(path: Path) -> str:
    """How to name a file in messages: as the user would type it, relative when shorter."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if len(rel) < len(str(path)) else str(path)


def parse_manifest(
    text: str, *, base_dir: Path, name: str = MANIFEST_NAME, package: bool = False
) -> Manifest:
    """Parse and validate manifest text; relative paths resolve against ``base_dir``.

    ``package``: the text is a package's Motte.toml, whose paths name nothing on this host
    yet (its workload comes from the package; its host paths are requests a host grants or
    not, ``motte.manifest.apply_grants``), so none is looked at on the disk."""
    from motte._toml import key_lines, parse_toml
    from motte.manifest._schema import manifest_from_dict

    data = parse_toml(text, source=name, error=ManifestError)
    return manifest_from_dict(
        data, base_dir=base_dir, name=name, lines=key_lines(text), package=package
    )


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a Motte.toml file."""
    source = Path(path).absolute()
    name = _display(source)
    from motte._toml import read_text

    text = read_text(
        source,
        what="manifest",
        max_bytes=MAX_MANIFEST_BYTES,
        error=ManifestError,
        name=name,
        missing=NotFoundError,
    )
    manifest = parse_manifest(text, base_dir=source.parent, name=name)
    return manifest.replace(source=source)


def manifest_for_module(path: str | os.PathLike[str]) -> Manifest:
    """The empty grant for a bare module: no files, no env, no network, default limits."""
    p = Path(path)
    return Manifest(workload=Workload(path=Path(os.path.normpath(p.absolute())), where=str(p)))


def manifest_for_digest(digest: str) -> Manifest:
    """The empty grant for a workload named by digest (looked up in the local store)."""
    try:
        return Manifest(workload=Workload(digest=check_digest(digest), where=digest))
    except ValueError as e:
        raise ManifestError(str(e)) from None


def resolve_target(target: str) -> Manifest:
    """What ``motte run TARGET`` means: a digest, a directory with a Motte.toml, a manifest
    file, or a module (recognised by the wasm magic number, whatever its name)."""
    if not target:
        raise UsageError(
            "the workload is empty: name a .wasm file, a Motte.toml, a directory holding one, "
            "a sha256: digest or a package reference",
            hint="e.g. motte run examples/hello",
        )
    if target.startswith("sha256:"):
        return manifest_for_digest(target)
    path = Path(target)
    if path.is_dir():
        manifest_path = path / MANIFEST_NAME
        if not os.path.lexists(manifest_path):
            raise NotFoundError(
                f"{target}: a directory without a {MANIFEST_NAME}",
                hint=f"point at a .wasm file, or write {manifest_path}",
            )
        return load_manifest(manifest_path)
    from motte._regular_file import NotRegularFileError, read_regular

    try:
        head = read_regular(path, 3)
    except FileNotFoundError:
        raise NotFoundError(f"{target}: no such file") from None
    except NotRegularFileError as e:
        raise UsageError(f"{target}: {e.strerror}, not a workload or a manifest") from None
    except OSError as e:
        raise NotFoundError(f"{target}: cannot read: {e.strerror}") from None
    if head == WASM_MAGIC:
        return manifest_for_module(path)
    if path.suffix in (".wasm", ".cwasm"):
        raise ManifestError(f"{target}: not a WebAssembly binary (no \\0asm magic number)")
    if path.suffix == ".wat":
        raise ManifestError(
            f"{target}: WebAssembly text is not run directly",
            hint="compile it first, e.g. python -c 'import wasmtime,sys; "
            "sys.stdout.buffer.write(wasmtime.wat2wasm(open(sys.argv[1]).read()))' FILE.wat",
        )
    return load_manifest(path)
