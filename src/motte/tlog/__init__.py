"""The transparency log: an append-only RFC 6962 Merkle tree with C2SP checkpoints and tiles.

Writing::

    log = open_log()                      # the embedded log under motte_home()/tlog (SQLite)
    log = open_log("http://host:port")    # a `motte log serve`
    e = log.append(record)                # durable when it returns: e.index, e.leaf_hash
    bundle = log.inclusion_bundle(e.index)  # C2SP tlog-proof: index, proof, (co)signed checkpoint

Verifying (the recipe)::

    cp = verify_logged(record, bundle)    # trusted keys from motte_home()/tlog/trusted;
                                          # raises unless included AND consistent with the
                                          # last checkpoint seen from that log (ForkError)

The pieces: :func:`verify_inclusion_bundle` (signatures, witness quorum, audit path) and
:func:`check_and_remember` (fork detection). Everything that parses or verifies is a pure
function on bytes (``_merkle``, ``_note``, ``_checkpoint``, ``_tiles``, ``_bundle``,
``_witness``); storage and HTTP wrap them.
"""

from motte._lazy import lazy_exports
from motte.tlog._bundle import InclusionBundle, verify_inclusion_bundle
from motte.tlog._checkpoint import (
    Checkpoint,
    CheckpointBody,
    Cosignature,
    TrustedLogs,
    parse_checkpoint_unverified,
    verify_checkpoint,
)
from motte.tlog._errors import (
    ForkError,
    LogBehindError,
    LogNotFoundError,
    LogRemoteError,
    ProofError,
    SignatureError,
    TamperError,
    TlogError,
    TlogFormatError,
    TlogUsageError,
    WitnessRefusedError,
)
from motte.tlog._log import KEY_FILE, LocalLog, Log, LoggedEntry, default_log_dir, open_log
from motte.tlog._merkle import (
    EMPTY_ROOT,
    Frontier,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from motte.tlog._note import Signer, Verifier, open_note, parse_note, sign_note
from motte.tlog._remote import RemoteLog
from motte.tlog._tiles import MAX_ENTRY_SIZE, Tile, parse_tile_path
from motte.tlog._trust import (
    add_trusted,
    check_and_remember,
    forks_dir,
    last_seen,
    load_trusted,
    resolve_log,
    verify_logged,
)

__all__ = [
    "EMPTY_ROOT",
    "KEY_FILE",
    "MAX_ENTRY_SIZE",
    "Checkpoint",
    "CheckpointBody",
    "Cosignature",
    "ExportReport",
    "ForkError",
    "Frontier",
    "InclusionBundle",
    "LocalLog",
    "Log",
    "LogBehindError",
    "LogNotFoundError",
    "LogRemoteError",
    "LoggedEntry",
    "ProofError",
    "RemoteLog",
    "SignatureError",
    "Signer",
    "TamperError",
    "Tile",
    "TlogError",
    "TlogFormatError",
    "TlogUsageError",
    "TrustedLogs",
    "Verifier",
    "WitnessRefusedError",
    "add_trusted",
    "audit_log",
    "check_and_remember",
    "create_log_app",
    "create_witness_app",
    "default_log_dir",
    "default_witness_dir",
    "export_tiles",
    "forks_dir",
    "init_witness",
    "last_seen",
    "leaf_hash",
    "load_trusted",
    "node_hash",
    "open_log",
    "open_note",
    "open_witness",
    "parse_checkpoint_unverified",
    "parse_note",
    "parse_tile_path",
    "resolve_log",
    "root_of",
    "serve",
    "sign_note",
    "verify_checkpoint",
    "verify_consistency",
    "verify_inclusion",
    "verify_inclusion_bundle",
    "verify_logged",
]

# The log and witness servers import FastAPI; the audit and the witness load when used.
_LAZY = {
    "audit_log": "motte.tlog._audit",
    "ExportReport": "motte.tlog._export",
    "export_tiles": "motte.tlog._export",
    "create_log_app": "motte.tlog._server",
    "create_witness_app": "motte.tlog._server",
    "serve": "motte.tlog._server",
    "default_witness_dir": "motte.tlog._witness",
    "init_witness": "motte.tlog._witness",
    "open_witness": "motte.tlog._witness",
}

__getattr__ = lazy_exports(__name__, _LAZY, globals())
