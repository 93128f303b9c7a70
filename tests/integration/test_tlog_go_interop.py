"""Interop with Go's reference code: golang.org/x/mod/sumdb/note and sumdb/tlog (Debian).

A small Go program (tests/integration/go/) is built offline against Debian's
golang-golang-x-mod-dev with a throwaway GOCACHE. It checks our signed checkpoints (log
signature and witness cosignatures), our trees, inclusion and consistency proofs and our
served tiles with Go's code, rejects tampered copies, and emits Go-made vectors we verify.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from motte.tlog import (
    LocalLog,
    ProofError,
    SignatureError,
    Signer,
    TrustedLogs,
    root_of,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from motte.tlog._merkle import leaf_hash
from motte.tlog._witness import format_add_checkpoint, init_witness, open_witness
from tests.conftest import require
from tests.tlog._servers import start

pytestmark = pytest.mark.integration

GO_DIR = Path(__file__).parent / "go"
XMOD = Path("/usr/share/gocode/src/golang.org/x/mod")
SIZES = [1, 2, 3, 7, 8, 9, 255, 256, 257, 511, 600]
INDEXES = [0, 1, 2, 6, 7, 8, 254, 255, 256, 300, 510, 599]


@pytest.fixture(scope="module")
def go_helper(tmp_path_factory) -> Path:
    go = shutil.which("go")
    require(
        go is not None and (XMOD / "sumdb" / "tlog").is_dir(),
        "go and golang-golang-x-mod-dev (scripts/system-deps.sh test)",
    )
    tmp = tmp_path_factory.mktemp("go")
    env = dict(
        os.environ,
        GOCACHE=str(tmp / "cache"),
        GOPATH=str(tmp / "gopath"),
        GOPROXY="off",
        GOFLAGS="-mod=readonly",
        GOTOOLCHAIN="local",
        GO111MODULE="on",
    )
    out = tmp / "tloginterop"
    proc = subprocess.run(
        [go, "build", "-o", str(out), "."], cwd=GO_DIR, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return out


def go(helper: Path, mode: str, request: dict) -> dict:
    proc = subprocess.run(
        [str(helper), mode], input=json.dumps(request), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


ENTRIES = [b"entry %d" % i for i in range(600)]


@pytest.fixture(scope="module")
def witnessed_log(tmp_path_factory):
    """Our log of 600 entries, its checkpoint cosigned by two of our witnesses."""
    d = tmp_path_factory.mktemp("interop")
    log = LocalLog(d / "log", origin="motte.example/interop")
    log.append_many(ENTRIES)
    _, note = log.sign_checkpoint()
    cosigned = note
    witnesses = []
    for name in ("w1.example/witness", "w2.example/witness"):
        init_witness(d / name.split(".")[0], name=name)
        w = open_witness(d / name.split(".")[0], extra_logs=[log.verifier_key])
        cosigned += w.add_checkpoint(format_add_checkpoint(0, [], note), now=1700000000)
        witnesses.append(w.verifier_key)
    yield log, cosigned, witnesses
    log.close()


def our_proofs(log: LocalLog) -> tuple[list[dict], list[dict]]:
    inc = [
        {"index": i, "size": s, "proof": [b64(h) for h in log.inclusion_proof(i, s)]}
        for s in SIZES
        for i in INDEXES
        if i < s
    ]
    con = [
        {"old": m, "new": n, "proof": [b64(h) for h in log.consistency_proof(m, n)]}
        for n in SIZES
        for m in SIZES
        if m <= n
    ]
    return inc, con


def test_go_accepts_our_cosigned_checkpoint_tree_and_proofs(go_helper, witnessed_log):
    log, note, witnesses = witnessed_log
    inc, con = our_proofs(log)
    a = go(
        go_helper,
        "check",
        {
            "log_key": log.verifier_key,
            "cosigners": witnesses,
            "note": note.decode(),
            "entries": [b64(e) for e in ENTRIES],
            "inclusion": inc,
            "consistency": con,
        },
    )
    assert a["note_error"] == ""
    assert sorted(a["signers"]) == sorted(
        ["motte.example/interop", "w1.example/witness", "w2.example/witness"]
    )
    assert (a["origin"], a["size"]) == ("motte.example/interop", 600)
    assert a["root_error"] == ""  # Go's tree over the same entries has our root
    assert a["inclusion"] == [""] * len(inc)
    assert a["consistency"] == [""] * len(con)


def test_go_rejects_tampered_copies(go_helper, witnessed_log):
    log, note, witnesses = witnessed_log
    inc, con = our_proofs(log)
    bad_inc = [dict(p, proof=[b64(bytes(32)), *p["proof"][1:]]) for p in inc if p["proof"]]
    bad_con = [dict(p, proof=[b64(bytes(32)), *p["proof"][1:]]) for p in con if p["proof"]]
    forged = note.replace(b"\n600\n", b"\n601\n")
    a = go(
        go_helper,
        "check",
        {
            "log_key": log.verifier_key,
            "note": forged.decode(),
            "entries": [b64(e) for e in ENTRIES],
            "inclusion": bad_inc,
            "consistency": bad_con,
        },
    )
    assert "invalid signature" in a["note_error"]
    assert all(e for e in a["inclusion"]), "Go accepted a tampered inclusion proof"
    assert all(e for e in a["consistency"]), "Go accepted a tampered consistency proof"
    # a changed cosignature is caught by Go's note.Open through the cosignature verifier
    lines = note.decode().split("\n")
    last = lines[-2]
    sig = bytearray(base64.b64decode(last.split()[-1]))
    sig[-1] ^= 1
    lines[-2] = " ".join([*last.split()[:-1], b64(bytes(sig))])
    a = go(go_helper, "check", {"log_key": log.verifier_key, "cosigners": witnesses,
                                "note": "\n".join(lines)})  # fmt: skip
    assert "invalid signature" in a["note_error"]
    # and a note by a key Go was not given is not accepted
    stranger = Signer.generate("motte.example/interop").verifier.vkey  # same name, other key
    a = go(go_helper, "check", {"log_key": stranger, "note": note.decode()})
    assert a["note_error"] == "note has no verifiable signatures"


def test_we_verify_go_made_vectors(go_helper, tmp_path):
    entries = [b"go %d" % i for i in range(300)]
    sizes = [1, 2, 3, 5, 8, 13, 100, 255, 256, 257, 300]
    v = go(
        go_helper,
        "vectors",
        {"entries": [b64(e) for e in entries], "sizes": sizes, "indexes": [0, 1, 4, 99, 255, 299]},
    )["vectors"]
    roots = [base64.b64decode(r) for r in v["roots"]]
    assert [root_of(entries[:n]) for n in range(301)] == roots
    cp = verify_checkpoint(v["note"].encode(), [v["log_key"]])
    assert (cp.origin, cp.size, cp.root_hash) == ("go.example/interop", 300, roots[300])
    with pytest.raises(SignatureError, match="does not verify"):
        verify_checkpoint(v["tampered"].encode(), [v["log_key"]])
    with LocalLog(tmp_path / "same", origin="motte.example/same") as ours:
        ours.append_many(entries)
        for p in v["inclusion"]:
            proof = [base64.b64decode(h) for h in p["proof"]]
            i, s = p["index"], p["size"]
            verify_inclusion(leaf_hash(entries[i]), i, s, proof, roots[s])
            assert ours.inclusion_proof(i, s) == proof  # byte-identical to Go's
            with pytest.raises(ProofError):
                verify_inclusion(leaf_hash(b"not it"), i, s, proof, roots[s])
        for p in v["consistency"]:
            proof = [base64.b64decode(h) for h in p["proof"]]
            m, n = p["old"], p["new"]
            verify_consistency(m, n, proof, roots[m], roots[n])
            assert ours.consistency_proof(m, n) == proof
            if proof:
                with pytest.raises(ProofError):
                    flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
                    verify_consistency(m, n, flipped, roots[m], roots[n])
    assert len(v["inclusion"]) > 30 and len(v["consistency"]) > 40


def test_go_reads_our_served_tiles(go_helper, tmp_path):
    """Go's TileHashReader fetches our C2SP tiles over HTTP, checks them against our signed
    tree head, and proves entries and older trees from them."""
    d = tmp_path / "served"
    n = 66000  # full and partial tiles on levels 0, 1 and 2
    with LocalLog(d, origin="motte.example/tiles") as log:
        log.append_many([b"entry %d" % i for i in range(n)])
        vkey = log.verifier_key
    server = start(["log", "serve", "--dir", str(d)], env_home=tmp_path / "home")
    try:
        import httpx

        note = httpx.get(server.url + "/checkpoint").text
        assert TrustedLogs((vkey,)) and verify_checkpoint(note.encode(), [vkey]).size == n
        a = go(
            go_helper,
            "tiles",
            {
                "log_key": vkey,
                "note": note,
                "url": server.url,
                "indexes": [0, 255, 256, 65535, 65536, 65999],
                "sizes": [1, 256, 65536, 65537, 66000],
            },
        )
        assert a["note_error"] == "" and a["root_error"] == ""
        assert a["inclusion"] == [""] * 6
        assert a["consistency"] == [""] * 5
        # A server that serves a changed tile is caught by Go against the signed tree head.
        conn = sqlite3.connect(d / "log.db", isolation_level=None)
        conn.execute("DROP TRIGGER entries_no_update")  # the leaf hash of entry 65998
        conn.execute("UPDATE entries SET hashes = zeroblob(32) WHERE idx = 65998")
        conn.close()
        a = go(go_helper, "tiles", {"log_key": vkey, "note": note, "url": server.url,
                                    "indexes": [65998], "sizes": []})  # fmt: skip
        assert "inconsistent" in a["inclusion"][0] or a["root_error"], a
    finally:
        server.stop()
