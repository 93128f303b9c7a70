"""``motte volume``: sealed volumes for operators, metadata and ciphertext only.

A volume's snapshots on this host (``list``, ``inspect``, ``export``, ``import``) are read
from their clear headers: sizes, versions, what they are sealed to, when they were taken.
Nothing here can decrypt one: the key exists only in the Steward and in attested Keeps.
The Steward's counters (``list --counters``, ``accept-rollback``) act on the local
Steward's store (``MOTTE_HOME/steward``, or its PostgreSQL with ``--db``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from motte.cli import _typer as typer
from motte.errors import ExitStatus, NotFoundError, UsageError

app = typer.Typer(
    no_args_is_help=True,
    help="Sealed volumes (docs/sealed-state.md): snapshots on this host (encrypted; only "
    "their headers are read) and the Steward's rollback counters.",
    epilog="motte volume list; motte volume inspect acme/counter:data; motte volume export "
    "acme/counter:data --out backup.sealed; motte volume accept-rollback acme/counter:data "
    '--version 6 --reason "restored from backup"',
)

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Volume = Annotated[
    str,
    typer.Argument(
        metavar="VOLUME",
        help="A volume id (NAMESPACE/NAME:VOLUME or sha256:...:VOLUME; its snapshot is in "
        "the default place under MOTTE_HOME/volumes), or the path of a snapshot or of the "
        "directory holding it.",
        show_default=False,
    ),
]
Db = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="The local Steward's PostgreSQL database (default: as `motte steward` finds it).",
        show_default=False,
    ),
]


def _snapshot_path(text: str) -> Path:
    from motte.keep import SNAPSHOT_FILE

    path = Path(text)
    if os.path.isdir(path):
        return path / SNAPSHOT_FILE
    if os.path.lexists(path) or ("/" in text and ":" not in text):
        return path
    from motte.keep import default_host_dir
    from motte.steward import VolumeIdentity

    try:
        identity = VolumeIdentity.parse(text)
    except ValueError as e:
        raise UsageError(f"{text}: no such file, and not a volume id: {e}") from None
    return default_host_dir(identity) / SNAPSHOT_FILE


def _header(path: Path) -> Any:
    from motte.keep import peek_header

    header = peek_header(path)
    if header is None:
        raise NotFoundError(f"{path}: no snapshot there", hint="motte volume list")
    return header


def _describe(path: Path, header: Any) -> dict[str, Any]:
    return {
        **header.to_dict(),
        "path": str(path),
        "bytes": path.stat().st_size,
    }


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


@app.command("list")
def list_volumes(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="Look for snapshots under DIR (default: MOTTE_HOME/volumes).",
            show_default=False,
        ),
    ] = None,
    counters: Annotated[
        bool,
        typer.Option("--counters", help="List the local Steward's counters instead."),
    ] = False,
    db: Db = None,
    json_out: Json = False,
) -> int:
    """List sealed volumes: the snapshots on this host, or the Steward's counters."""
    from motte.cli._output import emit_json

    if counters:
        rows = [r.to_dict() for r in _counters(db).list()]
        if json_out:
            emit_json({"volumes": rows})
            return int(ExitStatus.OK)
        if not rows:
            typer.echo("the Steward knows no volume yet")
        for r in rows:
            size = "" if r["size"] is None else f", {_size(r['size'])}"
            typer.echo(
                f"{r['volume']}  sealed to {r['sealed_to']}  version {r['latest']}{size}"
                f"  recorded {r['snapshot_at'] or r['created_at']}"
            )
        return int(ExitStatus.OK)
    from motte.home import motte_home
    from motte.keep import SNAPSHOT_FILE, SnapshotError

    base = directory or motte_home() / "volumes"
    found = []
    for path in sorted(base.rglob(SNAPSHOT_FILE)) if base.is_dir() else []:
        try:
            found.append(_describe(path, _header(path)))
        except SnapshotError as e:
            found.append({"path": str(path), "error": e.message})
    if json_out:
        emit_json({"directory": str(base), "volumes": found})
        return int(ExitStatus.OK)
    if not found:
        typer.echo(f"no sealed volume snapshots under {base}")
    for v in found:
        if "error" in v:
            typer.echo(f"{v['path']}: {v['error']}")
            continue
        typer.echo(
            f"{v['volume']}  sealed to {v['sealed_to']}  version {v['version']}  "
            f"{_size(v['size'])} ({_size(v['bytes'])} on disk)  taken {v['created_at']}  "
            f"{v['path']}"
        )
    return int(ExitStatus.OK)


def _counters(db: str | None) -> Any:
    from motte.steward import Steward, VolumeCounters

    steward = Steward(database=db)
    return VolumeCounters(steward.store.db, clock=steward.clock)


@app.command()
def inspect(
    volume: Volume,
    steward_side: Annotated[
        bool,
        typer.Option("--counter", help="Also show what the local Steward records of it."),
    ] = False,
    db: Db = None,
    json_out: Json = False,
) -> int:
    """Show a snapshot's header: volume, sealed-to, version, size, when it was taken."""
    from motte.cli._output import emit_json

    path = _snapshot_path(volume)
    doc = _describe(path, _header(path))
    if steward_side:
        record = _counters(db).show(doc["volume"]).to_dict()
        doc["steward"] = record
        doc["accepted"] = _accepted(doc, record)
    if json_out:
        emit_json(doc)
        return int(ExitStatus.OK)
    typer.echo(f"volume:     {doc['volume']} (sealed to {doc['sealed_to']})")
    typer.echo(f"version:    {doc['version']} (snapshot id {doc['id']})")
    typer.echo(f"taken:      {doc['created_at']}")
    typer.echo(
        f"size:       {_size(doc['size'])} in {doc['entries']} entries; "
        f"{_size(doc['bytes'])} on disk"
    )
    typer.echo(f"file:       {doc['path']}")
    if steward_side:
        typer.echo(f"steward:    version {doc['steward']['latest']} recorded; {doc['accepted']}")
    return int(ExitStatus.OK)


def _accepted(doc: dict[str, Any], record: dict[str, Any]) -> str:
    latest, v = record["latest"], doc["version"]
    if v == latest and record["snapshot_id"] in (None, doc["id"]):
        return "this snapshot opens"
    if v == latest + 1:
        return "this snapshot opens (one ahead: written, not yet committed)"
    if v < latest:
        return f"REFUSED: older than version {latest} (a rollback; accept-rollback to allow)"
    return f"REFUSED: version {latest} is recorded"


@app.command()
def export(
    volume: Volume,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Where to write the snapshot (ciphertext).",
            show_default=False,
        ),
    ],
    json_out: Json = False,
) -> int:
    """Copy a volume's snapshot for backup: its ciphertext, as it is on disk; never plaintext."""
    from motte.cli._output import emit_json
    from motte.fsutil import atomic_writer

    path = _snapshot_path(volume)
    header = _header(path)
    if out.exists():
        raise UsageError(f"{out} exists; export writes a new file")
    size = 0
    with open(path, "rb") as src, atomic_writer(out, mode=0o600) as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
            size += len(chunk)
    if json_out:
        emit_json({**header.to_dict(), "out": str(out), "bytes": size})
    else:
        typer.echo(
            f"exported {header.volume} version {header.version} ({_size(size)}, encrypted) to {out}"
        )
    return int(ExitStatus.OK)


@app.command("import")
def import_(
    snapshot: Annotated[
        Path, typer.Argument(metavar="FILE", help="A snapshot made by motte volume export.")
    ],
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            metavar="HOSTDIR",
            help="The volume's host directory (default: its place under MOTTE_HOME/volumes).",
            show_default=False,
        ),
    ] = None,
    replace_newer: Annotated[
        bool,
        typer.Option(
            "--replace-newer",
            help="Replace a snapshot there that is newer than FILE (it is kept beside it, as "
            "volume.sealed.replaced-vN).",
        ),
    ] = False,
    json_out: Json = False,
) -> int:
    """Put a backed-up snapshot where its volume's Keep will open it (atomically).

    The Steward still decides: a snapshot older than the version it recorded opens only
    after `motte volume accept-rollback`.
    """
    from motte.cli._output import emit_json
    from motte.fsutil import atomic_writer
    from motte.keep import SNAPSHOT_FILE, default_host_dir, peek_header
    from motte.steward import VolumeIdentity

    header = _header(snapshot)
    try:
        identity = VolumeIdentity.parse(header.volume)
    except ValueError as e:
        raise UsageError(f"{snapshot}: its header names no volume: {e}") from None
    directory = to or default_host_dir(identity)
    target = directory / SNAPSHOT_FILE
    present = peek_header(target)
    kept = None
    if present is not None:
        if present.volume != header.volume:
            raise UsageError(
                f"{target} holds volume {present.volume}, not {header.volume}; nothing changed"
            )
        if present.version > header.version and not replace_newer:
            raise UsageError(
                f"{target} is version {present.version}, newer than {snapshot} (version "
                f"{header.version}); nothing changed",
                hint="add --replace-newer to restore the older one (then motte volume "
                "accept-rollback for the Steward)",
            )
        kept = directory / f"{SNAPSHOT_FILE}.replaced-v{present.version}"
        if not kept.exists():
            os.link(target, kept)
    with open(snapshot, "rb") as src, atomic_writer(target, mode=0o600) as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    doc = {**header.to_dict(), "path": str(target), "kept": str(kept) if kept else None}
    if json_out:
        emit_json(doc)
    else:
        typer.echo(f"imported {header.volume} version {header.version} to {target}")
        if kept is not None:
            typer.echo(f"the snapshot it replaced is kept as {kept}")
    return int(ExitStatus.OK)


@app.command("accept-rollback")
def accept_rollback(
    volume: Annotated[
        str, typer.Argument(metavar="VOLUME", help="The volume id, e.g. acme/counter:data.")
    ],
    version: Annotated[
        int,
        typer.Option(
            "--version",
            metavar="N",
            help="The snapshot version to accept as latest.",
            show_default=False,
        ),
    ],
    reason: Annotated[
        str,
        typer.Option(
            "--reason", metavar="TEXT", help="Why (kept in the audit log).", show_default=False
        ),
    ],
    db: Db = None,
    json_out: Json = False,
) -> int:
    """Disaster recovery: make the Steward accept an older snapshot of a volume, on purpose.

    The local Steward records version N as the latest (any snapshot of that version opens,
    then the counter goes on from it) and writes an audit row naming the old and the new
    version, who and why (motte secret audit). Version 0 starts the volume afresh.
    """
    import os as _os

    from motte.cli._output import emit_json
    from motte.steward import VolumeIdentity

    try:
        VolumeIdentity.parse(volume)
    except ValueError as e:
        raise UsageError(f"{volume}: {e}") from None
    counters = _counters(db)
    before = counters.show(volume).latest
    record = counters.accept_rollback(
        volume, version, actor=f"local uid {_os.getuid()}", reason=reason
    )
    if json_out:
        emit_json({**record.to_dict(), "previous": before})
    else:
        typer.echo(
            f"the Steward now records version {record.latest} of {volume} (was {before}); audited"
        )
    return int(ExitStatus.OK)
