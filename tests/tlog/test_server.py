"""The HTTP front ends driven in-process (ASGI, no sockets): log endpoints, remote client."""

from __future__ import annotations

import base64
import gzip
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

from motte.tlog import (
    LocalLog,
    RemoteLog,
    Tile,
    check_and_remember,
    leaf_hash,
    parse_checkpoint_unverified,
    root_of,
    verify_checkpoint,
    verify_inclusion_bundle,
)
from motte.tlog._server import create_log_app, create_witness_app
from motte.tlog._tiles import decode_entry_bundle
from motte.tlog._witness import init_witness, open_witness

with warnings.catch_warnings():  # Starlette's TestClient warns it will move to httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


# Every case on the embedded SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("database")


@pytest.fixture
def log(tmp_path):
    with LocalLog(tmp_path / "log", origin="example.com/served") as log:
        yield log


@pytest.fixture
def client(log):
    with TestClient(create_log_app(log)) as c:
        yield c


def test_fresh_log_serves_an_empty_checkpoint(client, log):
    r = client.get("/checkpoint")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.headers["cache-control"] == "no-cache"
    cp = verify_checkpoint(r.content, [log.verifier_key])
    assert cp.size == 0 and cp.root_hash == root_of([])
    assert client.get("/vkey").text.strip() == log.verifier_key


def test_add_is_acknowledged_with_index_and_leaf_and_covered_by_the_checkpoint(client, log):
    r = client.post("/add", content=b"hello")
    assert r.status_code == 200
    assert r.json() == {"index": 0, "leaf_hash": base64.b64encode(leaf_hash(b"hello")).decode()}
    cp = verify_checkpoint(client.get("/checkpoint").content, [log.verifier_key])
    assert cp.size == 1


def test_concurrent_adds_are_batched_without_loss(client, log):
    entries = [b"entry %d" % i for i in range(200)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda e: client.post("/add", content=e).json(), entries))
    assert sorted(r["index"] for r in results) == list(range(200))
    by_index = {r["index"]: e for r, e in zip(results, entries, strict=True)}
    assert log.store.read_entries(0, 200) == [by_index[i] for i in range(200)]
    # fewer checkpoints than entries: appends were group-committed
    assert len(log.store.checkpoints()) < 200


def test_entry_size_limit(client):
    assert client.post("/add", content=b"x" * 65536).status_code == 413
    assert client.post("/add", content=b"x" * 65535).status_code == 200


def test_tiles_and_entry_bundles_are_static_and_immutable(client, log):
    entries = [b"e%d" % i for i in range(300)]
    log.append_many(entries)
    r = client.get("/tile/0/000")
    assert r.status_code == 200 and len(r.content) == 8192
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content[:32] == leaf_hash(b"e0")
    assert len(client.get("/tile/0/001.p/44").content) == 44 * 32
    assert client.get("/tile/0/001").status_code == 404  # not full yet
    assert client.get("/tile/1/000.p/1").content == root_of(entries[:256])
    r = client.get("/tile/entries/001.p/44", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert decode_entry_bundle(r.content) == entries[256:]  # httpx decompressed it
    raw = client.get("/tile/entries/001.p/44", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert decode_entry_bundle(raw.content) == entries[256:]
    assert gzip.compress(raw.content)  # sanity: the raw body is the uncompressed bundle
    assert client.get("/tile/0/1").status_code == 400
    assert client.get("/tile/0/x000/001").status_code == 400


def test_proof_endpoints(client, log):
    log.append_many([b"p%d" % i for i in range(20)])
    client.post("/add", content=b"p20")
    r = client.get("/proof/inclusion/7")
    cp = verify_inclusion_bundle(b"p7", r.content, [log.verifier_key])
    assert cp.size == 21
    lines = client.get("/proof/consistency/5/21").text.split()
    assert [base64.b64decode(x) for x in lines] == log.consistency_proof(5, 21)
    assert client.get("/proof/inclusion/99").status_code == 404
    assert client.get("/proof/consistency/9/5").status_code == 400


def test_remote_log_reads_proofs_from_tiles(client, log):
    remote = RemoteLog("http://testserver", client=client)
    entries = [b"r%d" % i for i in range(600)]
    log.append_many(entries[:599])
    got = remote.append(entries[599])
    assert got.index == 599
    assert remote.verifier_key == log.verifier_key
    assert remote.origin == "example.com/served"
    for i in (0, 255, 256, 598, 599):
        bundle = remote.inclusion_bundle(i)
        assert verify_inclusion_bundle(entries[i], bundle, [log.verifier_key]).size == 600
    for old, new in [(1, 600), (256, 600), (300, 512), (599, 600)]:
        assert remote.consistency_proof(old, new) == log.consistency_proof(old, new)
    cp = verify_checkpoint(remote.checkpoint(), [log.verifier_key])
    assert check_and_remember(cp, remote) == cp
    assert remote.tile(Tile(0, 2, 88)) == log.store.read_tile(Tile(0, 2, 88))


def test_witness_endpoint_speaks_tlog_witness(tmp_path, log):
    init_witness(tmp_path / "w", name="witness.example/http")
    w = open_witness(tmp_path / "w", extra_logs=[log.verifier_key])
    log.append_many([b"a", b"b"])
    _, note = log.sign_checkpoint()
    from motte.tlog._witness import format_add_checkpoint

    with TestClient(create_witness_app(w, clock=lambda: 1700000000.5)) as c:
        r = c.post("/add-checkpoint", content=format_add_checkpoint(0, [], note))
        assert r.status_code == 200, r.text
        cp = verify_checkpoint(note + r.content, [log.verifier_key, w.verifier_key])
        assert cp.cosignatures[0].timestamp == 1700000000
        r = c.post("/add-checkpoint", content=format_add_checkpoint(0, [], note))
        assert (r.status_code, r.text) == (409, "2\n")
        assert r.headers["content-type"] == "text/x.tlog.size"
        r = c.post("/add-checkpoint", content=b"garbage")
        assert r.status_code == 400
        assert c.get("/vkey").text.strip() == w.verifier_key


def test_checkpoint_note_has_log_signature_line(client, log):
    client.post("/add", content=b"x")
    _, note = parse_checkpoint_unverified(client.get("/checkpoint").content)
    assert [s.name for s in note.signatures] == ["example.com/served"]
