"""The witness (C2SP tlog-witness) and a log collecting cosignatures, without sockets."""

from __future__ import annotations

import pytest

from motte.tlog import (
    LocalLog,
    SignatureError,
    TrustedLogs,
    WitnessRefusedError,
    verify_checkpoint,
    verify_inclusion_bundle,
)
from motte.tlog._note import COSIGNATURE_ED25519, Signer
from motte.tlog._witness import (
    WitnessedLog,
    WitnessState,
    format_add_checkpoint,
    init_witness,
    open_witness,
    parse_add_checkpoint,
)


@pytest.fixture
def log(tmp_path):
    with LocalLog(tmp_path / "log", origin="example.com/witnessed") as log:
        yield log


@pytest.fixture
def witness(tmp_path, log):
    d = tmp_path / "witness"
    init_witness(d, name="witness.example/w1")
    w = open_witness(d, extra_logs=[log.verifier_key])
    yield w
    w.state.close()


def request(log: LocalLog, old: int) -> bytes:
    size, note = log.sign_checkpoint()
    return format_add_checkpoint(old, log.consistency_proof(old, size) if old else [], note)


def refused(witness, body, status):
    with pytest.raises(WitnessRefusedError) as e:
        witness.add_checkpoint(body, now=1700000000)
    assert e.value.status == status, e.value.message
    return e.value


def test_request_format_round_trips():
    note = "o\n5\nAA==\n\n— k sig\n".encode()
    body = format_add_checkpoint(3, [b"\1" * 32, b"\2" * 32], note)
    assert body.startswith(b"old 3\nAQEB")
    assert parse_add_checkpoint(body) == (3, [b"\1" * 32, b"\2" * 32], note)


def test_cosigns_first_and_consistent_checkpoints(log, witness):
    log.append_many([b"a", b"b", b"c"])
    line = witness.add_checkpoint(request(log, 0), now=1700000000)
    assert line.decode().startswith("— witness.example/w1 ") and line.endswith(b"\n")
    note = log.sign_checkpoint()[1] + line
    cp = verify_checkpoint(note, [log.verifier_key, witness.verifier_key])
    assert cp.cosignatures[0].timestamp == 1700000000
    log.append_many([b"d", b"e"])
    witness.add_checkpoint(request(log, 3), now=1700000001)
    assert witness.state.get(log.origin)[0] == 5
    witness.add_checkpoint(request(log, 5), now=1700000002)  # same checkpoint again: fine


def test_refusals_carry_the_spec_status(log, witness, tmp_path):
    log.append_many([b"a", b"b", b"c"])
    witness.add_checkpoint(request(log, 0), now=1)
    log.append(b"d")
    e = refused(witness, request(log, 0), 409)  # the witness is at 3, not 0
    assert e.witness_size == 3
    refused(witness, request(log, 3).replace(b"old 3", b"old 9"), 400)  # old > size
    size, note = log.sign_checkpoint()
    proof = log.consistency_proof(3, size)
    bad = format_add_checkpoint(3, [bytes(32), *proof[1:]], note)
    refused(witness, bad, 422)
    stranger = LocalLog(tmp_path / "other", origin="example.com/stranger")
    stranger.append(b"x")
    refused(witness, request(stranger, 0), 404)
    impostor_key = Signer.generate(log.origin)  # right origin, untrusted key
    from motte.tlog._note import sign_note

    text = note[: note.index(b"\n\n") + 1]
    refused(witness, format_add_checkpoint(3, proof, sign_note(text, [impostor_key])), 403)
    refused(witness, b"old x\n\n" + note, 400)
    refused(witness, b"old 3\n" + note, 400)
    assert witness.state.get(log.origin)[0] == 3  # nothing above moved the witness


def test_a_forked_checkpoint_of_the_same_size_is_refused(log, witness, tmp_path):
    import shutil

    log.append_many([b"a", b"b"])
    witness.add_checkpoint(request(log, 0), now=1)
    (tmp_path / "twin").mkdir(mode=0o700)
    shutil.copy2(log.directory / "log.key", tmp_path / "twin" / "log.key")
    twin = LocalLog(tmp_path / "twin")
    twin.append_many([b"a", b"B"])
    e = refused(witness, request(twin, 2), 409)
    assert "forked" in e.message
    twin.append(b"c")
    refused(witness, request(twin, 2), 422)  # and no proof joins its growth either


def test_state_survives_a_restart(tmp_path, log, witness):
    log.append_many([b"a%d" % i for i in range(7)])  # distinct: identical entries dedup
    witness.add_checkpoint(request(log, 0), now=1)
    witness.state.close()
    again = WitnessState(tmp_path / "witness" / "state.db")
    assert again.get(log.origin)[0] == 7
    again.close()


def test_witness_key_must_be_a_cosigner_key(tmp_path):
    from motte.tlog._witness import Witness

    with pytest.raises(Exception, match=r"not a cosignature"):
        Witness(Signer.generate("w"), [], WitnessState(tmp_path / "s.db"))
    assert WitnessedLog("o", ()).origin == "o"


# -- a log that asks witnesses ----------------------------------------------------------------


def wire(log: LocalLog, witnesses: dict[str, object]) -> None:
    """Route the log's witness requests to in-process witnesses, as HTTP would."""

    def post(url: str, body: bytes) -> tuple[int, str]:
        w = witnesses[url]
        try:
            return 200, w.add_checkpoint(body, now=1700000000).decode()
        except WitnessRefusedError as e:
            if e.status == 409:
                return 409, f"{e.witness_size}\n"
            return e.status, e.message

    log.post_witness = post


def configure(log: LocalLog, pairs: list[tuple[str, str]]) -> None:
    (log.directory / "witnesses").write_text("".join(f"{v} {u}\n" for v, u in pairs))
    from motte.tlog._log import read_witness_config

    log.witnesses = read_witness_config(log.directory / "witnesses")


def test_log_collects_cosignatures_for_its_bundles(tmp_path, log, witness):
    w2_dir = tmp_path / "w2"
    init_witness(w2_dir, name="witness.example/w2")
    w2 = open_witness(w2_dir, extra_logs=[log.verifier_key])
    configure(log, [(witness.verifier_key, "http://w1"), (w2.verifier_key, "http://w2")])
    wire(log, {"http://w1": witness, "http://w2": w2})
    log.append_many([b"one", b"two", b"three"])
    bundle = log.inclusion_bundle(1)
    trusted = TrustedLogs((log.verifier_key,), (witness.verifier_key, w2.verifier_key))
    cp = verify_inclusion_bundle(b"two", bundle, trusted)
    assert len(cp.cosignatures) == 2
    log.append(b"four")  # the log tells each witness where it left off (old 3)
    cp = verify_inclusion_bundle(b"four", log.inclusion_bundle(3), trusted)
    assert cp.size == 4 and len(cp.cosignatures) == 2


def test_log_catches_up_a_witness_that_lost_track(tmp_path, log, witness):
    configure(log, [(witness.verifier_key, "http://w1")])
    wire(log, {"http://w1": witness})
    log.append_many([b"1", b"2"])
    log.checkpoint()
    log.store.set_witness_size(witness.verifier_key, 0)  # the log forgot; the witness says 409
    log.append(b"3")
    assert b"witness.example/w1" in log.checkpoint()


def test_an_unreachable_witness_leaves_the_checkpoint_uncosigned(log, witness):
    from motte.tlog import LogRemoteError

    configure(log, [(witness.verifier_key, "http://down")])

    def down(url, body):
        raise LogRemoteError("connection refused")

    calls = []
    log.post_witness = lambda url, body: calls.append(url) or down(url, body)
    clock = [1000.0]
    log.now = lambda: clock[0]
    log.append(b"x")
    note = log.checkpoint()
    trusted = TrustedLogs((log.verifier_key,), (witness.verifier_key,))
    with pytest.raises(SignatureError, match=r"cosigned by 0 trusted witnesses"):
        verify_checkpoint(note, trusted)
    log.append(b"y")
    log.checkpoint()
    assert calls == ["http://down"]  # not asked again while backing off
    clock[0] += 31
    wire(log, {"http://down": witness})  # it is back
    log.append(b"z")
    assert len(verify_checkpoint(log.checkpoint(), trusted).cosignatures) == 1


def test_a_witness_returning_a_bad_cosignature_is_not_stored(log, witness):
    configure(log, [(witness.verifier_key, "http://liar")])
    liar = Signer.generate("witness.example/w1", COSIGNATURE_ED25519)  # same name, other key

    def post(url, body):
        note = parse_add_checkpoint(body)[2]
        text = note[: note.index(b"\n\n") + 1]
        line = liar.signature_line(text, timestamp=1)
        # present it under the real witness's key ID
        import base64
        import struct

        blob = base64.b64decode(line.split()[-1])
        blob = struct.pack(">I", witness.signer.verifier.key_id) + blob[4:]
        return 200, f"— witness.example/w1 {base64.b64encode(blob).decode()}\n"

    log.post_witness = post
    log.append(b"x")
    log.checkpoint()
    assert log.store.cosignature_lines(1) == []


def test_witness_replicas_sharing_a_database_never_roll_it_back(tmp_path, database):
    """Two witnesses (one key, one database: SQLite file or PostgreSQL) asked at the same
    instant to cosign the same growth: exactly one moves the state; the other is told the
    size it now has (409), as two requests to one witness would be."""
    import threading

    from motte.store import resolve_database
    from motte.tlog._witness import Witness

    d = tmp_path / "witness"
    signer = init_witness(d, name="witness.example/shared")
    with LocalLog(tmp_path / "log", origin="example.com/shared-witness") as log:
        logs = [WitnessedLog(log.origin, (Signer.from_skey(log.signer.skey).verifier,))]
        url = resolve_database(None, default=d / "state.db")
        replicas = [Witness(signer, logs, WitnessState(url)) for _ in range(2)]
        log.append_many([b"a", b"b"])
        replicas[0].add_checkpoint(request(log, 0), now=1)
        for round_ in range(5):
            log.append(b"more %d" % round_)
            body = request(log, log.size - 1)
            outcomes: list[int] = []
            barrier = threading.Barrier(2)

            def ask(w: Witness, body: bytes = body, barrier=barrier, outcomes=outcomes) -> None:
                barrier.wait()
                try:
                    w.add_checkpoint(body, now=2)
                    outcomes.append(200)
                except WitnessRefusedError as e:
                    outcomes.append(e.status)

            threads = [threading.Thread(target=ask, args=(w,)) for w in replicas]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert sorted(outcomes) == [200, 409]
            assert replicas[1].state.get(log.origin)[0] == log.size
        for w in replicas:
            w.state.close()
