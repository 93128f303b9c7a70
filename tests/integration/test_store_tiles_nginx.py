"""``motte log export-tiles``: the log as static files, served by a real nginx, read and
verified by motte's own client (which trusts only the checkpoint's signature)."""

from __future__ import annotations

import shutil

import pytest

from motte.tlog import (
    LocalLog,
    ProofError,
    RemoteLog,
    export_tiles,
    load_trusted,
    parse_checkpoint_unverified,
    verify_consistency,
    verify_inclusion_bundle,
)
from tests.conftest import require
from tests.integration._peers import nginx

# The store the log is exported from: the embedded SQLite, and PostgreSQL.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("database")]


def entries(lo: int, hi: int) -> list[bytes]:
    return [b"statement %d" % i for i in range(lo, hi)]


@pytest.fixture
def served(tmp_path):
    require(shutil.which("nginx") is not None, "nginx (scripts/system-deps.sh test)")
    out = tmp_path / "www"
    out.mkdir()
    proc, url = nginx(tmp_path / "nginx", out)
    try:
        yield out, url
    finally:
        proc.stop()


def test_a_client_verifies_entries_and_growth_from_static_tiles(tmp_path, served, cli):
    out, url = served
    with LocalLog(tmp_path / "log", origin="example.com/static") as log:
        log.append_many(entries(0, 700))
        log.checkpoint()
        vkey = log.verifier_key
        r = cli("log", "export-tiles", out, "--dir", tmp_path / "log", "--json")
        assert r.exit_code == 0, r.stderr
        trusted = load_trusted([vkey], include_embedded=False)
        with RemoteLog(url) as remote:
            old = remote.checkpoint()
            assert parse_checkpoint_unverified(old)[0].size == 700
            for i in (0, 255, 256, 511, 699):
                bundle = remote.inclusion_bundle(i)
                verify_inclusion_bundle(entries(i, i + 1)[0], bundle, trusted)
            assert remote.read_entries_unverified(690, 700, 700) == entries(690, 700)

        # The log grows; the incremental export writes only what is new.
        log.append_many(entries(700, 1100))
        log.checkpoint()
        log_export = export_tiles(log, out, incremental=True)
        assert log_export.size == 1100 and log_export.skipped >= 2  # tiles 0/000 and 0/001
        with RemoteLog(url) as remote:
            new = remote.checkpoint()
            verify_inclusion_bundle(entries(1099, 1100)[0], remote.inclusion_bundle(1099), trusted)
            proof = remote.consistency_proof(700, 1100)
        old_root = parse_checkpoint_unverified(old)[0].root_hash
        new_root = parse_checkpoint_unverified(new)[0].root_hash
        verify_consistency(700, 1100, proof, old_root, new_root)
        # the command's own fork check, through the static server
        (tmp_path / "e").write_bytes(entries(5, 6)[0])
        cli("log", "prove", "5", "-o", tmp_path / "e.proof", "--log", url)
        r = cli("log", "verify", tmp_path / "e", tmp_path / "e.proof", "--key", vkey, "--log", url)
        assert r.exit_code == 0 and "OK: entry 5" in r.stdout, r.stderr


def test_a_changed_tile_on_the_server_is_caught(tmp_path, served):
    out, url = served
    with LocalLog(tmp_path / "log", origin="example.com/static") as log:
        log.append_many(entries(0, 300))
        log.checkpoint()
        export_tiles(log, out)
        trusted = load_trusted([log.verifier_key], include_embedded=False)
    tile = out / "tile" / "0" / "000"
    data = bytearray(tile.read_bytes())
    data[40] ^= 1  # one hash of the first tile, as a compromised mirror would serve it
    tile.write_bytes(bytes(data))
    with RemoteLog(url) as remote, pytest.raises(ProofError):
        verify_inclusion_bundle(entries(3, 4)[0], remote.inclusion_bundle(3), trusted)


def test_exporting_over_another_history_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "www"
    with LocalLog(tmp_path / "a", origin="example.com/a") as a:
        a.append_many(entries(0, 300))
        a.checkpoint()
        export_tiles(a, out)
    monkeypatch.delenv("MOTTE_DB", raising=False)  # a second log: its own SQLite
    with LocalLog(tmp_path / "b", origin="example.com/b") as b:
        b.append_many([b"other %d" % i for i in range(300)])
        b.checkpoint()
        from motte.tlog import TamperError, TlogUsageError

        with pytest.raises(TamperError, match="another history"):
            export_tiles(b, out)
        with pytest.raises(TlogUsageError, match=r"not a checkpoint of example\.com/b"):
            export_tiles(b, out, incremental=True)
