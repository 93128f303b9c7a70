"""Crash safety: SIGKILL `motte log serve` during appends, restart, lose nothing acknowledged.

Each round starts the real server, runs concurrent appenders (and a checkpoint reader)
against it, and SIGKILLs it at a random moment, requests in flight. After every restart the
tree must hold every entry ever acknowledged, at the index it was acknowledged with, and be
consistent with every checkpoint the server ever returned.
"""

from __future__ import annotations

import base64
import random
import threading
import time

import httpx
import pytest

from motte.tlog import (
    LocalLog,
    Tile,
    leaf_hash,
    verify_checkpoint,
    verify_consistency,
)
from motte.tlog._audit import audit_log
from motte.tlog._tiles import TILE_WIDTH, decode_entry_bundle
from tests.tlog._servers import start

pytestmark = pytest.mark.integration

ROUNDS = 4
WRITERS = 4


class Observed:
    """What clients were told: acknowledged entries and every checkpoint served."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: dict[int, bytes] = {}
        self.checkpoints: dict[int, bytes] = {}  # size -> note


def writer(url: str, tag: str, seen: Observed, stop: threading.Event) -> None:
    n = 0
    with httpx.Client(timeout=10) as c:
        while not stop.is_set():
            entry = f"{tag}-{n}".encode()
            n += 1
            try:
                r = c.post(url + "/add", content=entry)
            except httpx.HTTPError:
                return  # the server died: this entry was never acknowledged
            if r.status_code != 200:
                return
            got = r.json()
            assert got["leaf_hash"] == base64.b64encode(leaf_hash(entry)).decode()
            with seen.lock:
                assert got["index"] not in seen.acked, "an index was handed out twice"
                seen.acked[got["index"]] = entry


def checkpoint_reader(url: str, vkey: str, seen: Observed, stop: threading.Event) -> None:
    with httpx.Client(timeout=10) as c:
        while not stop.is_set():
            try:
                note = c.get(url + "/checkpoint").content
            except httpx.HTTPError:
                return
            cp = verify_checkpoint(note, [vkey])
            with seen.lock:
                prev = seen.checkpoints.setdefault(cp.size, note)
                assert verify_checkpoint(prev, [vkey]).root_hash == cp.root_hash
            time.sleep(0.01)


def check_after_restart(url: str, vkey: str, seen: Observed) -> int:
    with httpx.Client(timeout=30) as c:
        cp = verify_checkpoint(c.get(url + "/checkpoint").content, [vkey])
        # every acknowledged entry is there, at its index (read back from entry bundles)
        acked = dict(seen.acked)
        assert not acked or max(acked) < cp.size, "an acknowledged entry is past the tree"
        bundles: dict[int, list[bytes]] = {}
        for index, entry in acked.items():
            n = index // TILE_WIDTH
            if n not in bundles:
                width = min(TILE_WIDTH, cp.size - n * TILE_WIDTH)
                r = c.get(f"{url}/{Tile(None, n, width).path}")
                assert r.status_code == 200
                bundles[n] = decode_entry_bundle(r.content)
            assert bundles[n][index % TILE_WIDTH] == entry, f"entry {index} was lost or changed"
        # every checkpoint ever served is a prefix of the tree now
        for size, note in sorted(seen.checkpoints.items()):
            old = verify_checkpoint(note, [vkey])
            lines = c.get(f"{url}/proof/consistency/{size}/{cp.size}").text.split()
            proof = [base64.b64decode(x) for x in lines]
            verify_consistency(size, cp.size, proof, old.root_hash, cp.root_hash)
        with seen.lock:
            seen.checkpoints.setdefault(cp.size, c.get(url + "/checkpoint").content)
        return cp.size


def test_sigkill_during_appends_loses_no_acknowledged_entry(tmp_path):
    d = tmp_path / "log"
    with LocalLog(d, origin="motte.example/crash") as log:
        vkey = log.verifier_key
    rng = random.Random(20251126)
    seen = Observed()
    sizes = []
    for round_ in range(ROUNDS):
        server = start(["log", "serve", "--dir", str(d)], env_home=tmp_path / "home")
        try:
            if round_:
                sizes.append(check_after_restart(server.url, vkey, seen))
            stop = threading.Event()
            threads = [
                threading.Thread(target=writer, args=(server.url, f"r{round_}w{i}", seen, stop))
                for i in range(WRITERS)
            ]
            threads.append(
                threading.Thread(target=checkpoint_reader, args=(server.url, vkey, seen, stop))
            )
            for t in threads:
                t.start()
            start_count = len(seen.acked)
            deadline = time.monotonic() + 20
            while len(seen.acked) < start_count + 30 and time.monotonic() < deadline:
                time.sleep(0.01)  # appends are flowing before the kill timer starts
            time.sleep(rng.uniform(0.05, 0.5))
            server.kill()  # SIGKILL with requests in flight
            stop.set()
            for t in threads:
                t.join(30)
            assert len(seen.acked) >= start_count + 30, "appends did not flow"
        finally:
            server.kill()
    server = start(["log", "serve", "--dir", str(d)], env_home=tmp_path / "home")
    try:
        sizes.append(check_after_restart(server.url, vkey, seen))
    finally:
        server.stop()
    print(f"acknowledged {len(seen.acked)}, checkpoints {len(seen.checkpoints)}, sizes {sizes}")
    assert sizes == sorted(sizes) and len(seen.acked) > 50
    with LocalLog(d) as log:  # and the store agrees with itself, hash by hash
        report = audit_log(log)
    assert report.size >= len(seen.acked) and report.checkpoints >= len(seen.checkpoints)
