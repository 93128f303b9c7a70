"""Reading a package's history from a served log: every entry, or an honest "unknown".

Entries read over HTTP count only after they hash to the root of a checkpoint the consumer
verified; a server that hides or changes one makes the history incomplete, and the
judgement says so instead of trusting it.
"""

from __future__ import annotations

import shutil

import pytest

from motte.home import motte_home
from motte.tlog import RemoteLog, add_trusted, open_log
from motte.trust import Status, assess
from tests.tlog._servers import start
from tests.trust.test_scenarios import REF, good_release
from tests.trust.world import make_world

pytestmark = pytest.mark.integration


def test_entries_come_back_in_order_across_tiles(tmp_path, request):
    log = open_log()
    entries = [b"entry %d" % i for i in range(300)]  # a full tile of 256 and a partial one
    for e in entries:
        log.append(e)
    log.checkpoint()
    log.close()
    served = start(["log", "serve"], env_home=motte_home())
    request.addfinalizer(served.stop)
    with RemoteLog(served.url) as remote:
        assert remote.read_entries_unverified(0, 300, 300) == entries
        assert remote.read_entries_unverified(250, 260, 300) == entries[250:260]
        assert remote.read_entries_unverified(299, 300, 300) == entries[299:]
        assert remote.read_entries_unverified(10, 10, 300) == []


def test_a_log_that_hides_an_entry_leaves_the_history_unknown(tmp_path, monkeypatch, request):
    w = make_world(tmp_path)
    good_release(w)
    publisher = motte_home()
    log = open_log()
    vkey = log.verifier_key
    log.close()
    served = start(["log", "serve"], env_home=publisher)
    request.addfinalizer(served.stop)
    consumer = tmp_path / "consumer"
    shutil.copytree(publisher / "oci", consumer / "oci")
    shutil.copytree(publisher / "trust-roots", consumer / "trust-roots")
    monkeypatch.setenv("MOTTE_HOME", str(consumer))
    add_trusted(vkey, served.url)

    real = RemoteLog.read_entries_unverified

    def swapping(self, lo, hi, size):
        got = real(self, lo, hi, size)
        return [*got[:-1], b"nothing to see here"]  # the last entry swapped for another

    # While indexing: the swapped entry does not lead to the checkpoint's root; nothing of
    # that scan is kept, and the history is unknown rather than wrong.
    with monkeypatch.context() as m:
        m.setattr(RemoteLog, "read_entries_unverified", swapping)
        v = assess(REF, w.policy())
    resp = v.area("responsiveness")
    assert resp.status == Status.UNKNOWN and not v.accepted
    origin = vkey.split("+", 1)[0]
    size = open_log_size(served.url)
    assert resp.deciding.message == (
        f"advisories may be missing: cannot read the log {origin}: its entries do not hash "
        f"to the root of its checkpoint of size {size}"
    )

    honest = assess(REF, w.policy())
    assert honest.accepted, [a.deciding.message for a in honest.failing()]
    assert f"at size {size}" in honest.area("responsiveness").deciding.message

    # Later, fetching an indexed entry: the server's copy must hash to the indexed leaf.
    monkeypatch.setattr(RemoteLog, "read_entries_unverified", swapping)
    v = assess(REF, w.policy())
    resp = v.area("responsiveness")
    assert resp.status == Status.UNKNOWN
    assert resp.deciding.message.endswith("is not the entry indexed at that position")


def open_log_size(url: str) -> int:
    from motte.tlog import parse_checkpoint_unverified

    with RemoteLog(url) as remote:
        return parse_checkpoint_unverified(remote.checkpoint())[0].size
