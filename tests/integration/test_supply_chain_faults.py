"""Issue 19's four faults and releases, against Debian's docker-registry on 127.0.0.1.

Each test is the evaluation's attack replayed on a real registry (and, for the log faults,
a real ``motte log serve``): a tag moved back to an old digest its publisher once signed,
referrers attached by a stranger with push access, a log server that is behind, a log
that forked.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil

import httpx
import pytest

from motte.oci import (
    Descriptor,
    build_package,
    open_repository,
    parse_reference,
    push,
)
from motte.oci import _mediatypes as mt
from motte.sign import (
    INTOTO_PAYLOAD_TYPE,
    PUBLICATION,
    ArtifactVerificationError,
    Envelope,
    Signature,
    Statement,
    Subject,
    attach_statement,
    install_root,
    overrides_file,
    sign_artifact,
    sign_release,
    verify_artifact,
)
from motte.tlog import add_trusted, open_log
from tests.oci.registry_server import run_registry
from tests.tlog._servers import start
from tests.trust.test_enforce import COMMAND_BODY
from tests.trust.world import World

pytestmark = pytest.mark.integration

#: Another valid WASI command (an extra function): the old version the tag is moved back to.
OLD_COMMAND_BODY = __import__("wasmtime").wat2wasm('(module (func (export "_start")) (func))')[8:]


@pytest.fixture
def registry(tmp_path):
    with run_registry(tmp_path) as reg:
        yield reg


def _home(monkeypatch, path) -> None:
    monkeypatch.setenv("MOTTE_HOME", str(path))


def _log_vkey() -> str:
    with open_log() as log:
        return log.verifier_key


def _publisher(tmp_path, monkeypatch, request) -> tuple[World, str, str]:
    """A publisher's home with a root delegating acme to alice and a served log."""
    w = World(tmp_path / "acme-root", tmp_path)
    _home(monkeypatch, tmp_path / "publisher")
    w.delegate(w.alice)
    vkey = _log_vkey()
    served = start(["log", "serve"], env_home=tmp_path / "publisher")
    request.addfinalizer(served.stop)
    return w, served.url, vkey


def _publish(w: World, reg, tag: str, payload: bytes, *, release: bool = True, **kw) -> str:
    """Build, push, sign and (by default) release acme/hello:TAG in the registry; digest."""
    import subprocess

    repo, _ = w.source(f"src-{tag}-{len(os.listdir(w.tmp))}", payload)
    subprocess.run(["sh", "build.sh"], cwd=repo, check=True)
    digest = build_package(repo, parse_reference(f"acme/hello:{tag}")).digest
    ref = f"{reg.url}/acme/hello:{tag}"
    push(parse_reference(ref))
    sign_artifact(ref, [w.alice], **kw)
    if release:
        sign_release(ref, [w.alice], **kw)
    return digest


def _policy(w: World, tmp_path):
    path = tmp_path / "integrity.toml"
    path.write_text(w.policy_text(require='["integrity"]'))
    return path


def _move_tag(reg, tag: str, digest: str) -> None:
    """What anyone with push access can do: point a tag at another manifest."""
    url = f"{reg.url}/v2/acme/hello/manifests"
    data = httpx.get(f"{url}/{digest}", headers={"Accept": mt.OCI_MANIFEST}).content
    r = httpx.put(f"{url}/{tag}", content=data, headers={"Content-Type": mt.OCI_MANIFEST})
    assert r.status_code == 201, r.text


def _consumer(w: World, monkeypatch, path, vkey: str, url: str | None = None) -> None:
    _home(monkeypatch, path)
    install_root(w.root, now=w.now)
    add_trusted(vkey, url)


# -- fault 1: rollback -------------------------------------------------------------------------


def test_a_tag_moved_back_to_an_old_signed_digest_is_refused_by_verify_trust_and_run(
    registry, tmp_path, monkeypatch, cli, request
):
    w, url, vkey = _publisher(tmp_path, monkeypatch, request)
    old = _publish(w, registry, "0.9", OLD_COMMAND_BODY, log_url=url)
    new = _publish(w, registry, "1.0", COMMAND_BODY, log_url=url)
    ref = f"{registry.url}/acme/hello:1.0"

    _consumer(w, monkeypatch, tmp_path / "consumer", vkey, url)
    first = verify_artifact(ref)
    assert first.digest == new and first.release.status == "fresh"
    assert "release version 2, current" in first.release.message

    _move_tag(registry, "1.0", old)  # the evaluation's attack: 1.0 now names 0.9's digest
    with pytest.raises(ArtifactVerificationError) as e:
        verify_artifact(ref)
    assert e.value.check == "release"
    assert "its current release (version 2, accepted" in e.value.message
    assert f"names {new[:19]}: the tag was moved" in e.value.message

    # A consumer who never saw 1.0 is not fooled either: the digest is released as 0.9.
    _consumer(w, monkeypatch, tmp_path / "fresh", vkey, url)
    with pytest.raises(ArtifactVerificationError, match=r"released as :0\.9 \(version 1\)"):
        verify_artifact(ref)

    # trust and run refuse it too, and say why (integrity.release).
    _home(monkeypatch, tmp_path / "consumer")
    policy = _policy(w, tmp_path)
    r = cli("trust", ref, "--policy", policy, "-v")
    assert r.exit_code == 1, r.stdout + r.stderr
    assert "the tag was moved" in r.stdout
    r = cli("pull", ref)
    assert r.exit_code == 0, r.stderr
    r = cli("run", "acme/hello:1.0", "--trust-policy", policy)
    assert r.exit_code != 0 and "the tag was moved" in r.stderr

    # The escape hatch is loud and recorded; it does not lower what is remembered.
    r = cli("verify", ref, "--allow-rollback")
    assert r.exit_code == 0, r.stderr
    assert "WARNING: --allow-rollback" in r.stderr and str(overrides_file()) in r.stderr
    r = cli("run", "acme/hello:1.0", "--trust-policy", policy, "--allow-rollback")
    assert r.exit_code == 0, r.stderr
    assert "WARNING: --allow-rollback" in r.stderr
    records = [json.loads(line) for line in overrides_file().read_text().splitlines()]
    assert [(x["command"], x["digest"]) for x in records] == [
        ("motte verify", old),
        ("motte trust", old),
    ]
    with pytest.raises(ArtifactVerificationError, match="the tag was moved"):
        verify_artifact(ref)


def test_an_older_release_of_the_same_tag_is_a_rollback(registry, tmp_path, monkeypatch, request):
    w, url, vkey = _publisher(tmp_path, monkeypatch, request)
    first = _publish(w, registry, "1.0", b"first", log_url=url)
    fixed = _publish(w, registry, "1.0", b"fixed", log_url=url)  # version 2 names the fix
    ref = f"{registry.url}/acme/hello:1.0"
    _consumer(w, monkeypatch, tmp_path / "consumer", vkey, url)
    assert verify_artifact(ref).digest == fixed
    _move_tag(registry, "1.0", first)
    with pytest.raises(ArtifactVerificationError) as e:
        verify_artifact(ref)
    assert "release version 1 is older than version 2 accepted" in e.value.message
    assert e.value.message.endswith("a rollback")


def test_an_expired_release_is_refused(registry, tmp_path, monkeypatch, request):
    w, url, vkey = _publisher(tmp_path, monkeypatch, request)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    _publish(w, registry, "1.0", b"x", release=False, log_url=url)
    ref = f"{registry.url}/acme/hello:1.0"
    sign_release(ref, [w.alice], now=long_ago, expires=long_ago + dt.timedelta(days=7), log_url=url)
    _consumer(w, monkeypatch, tmp_path / "consumer", vkey, url)
    with pytest.raises(
        ArtifactVerificationError, match=r"release version 1 of acme/hello:1\.0 expired"
    ):
        verify_artifact(ref)


# -- fault 2: denial by a stranger -------------------------------------------------------------


def test_a_strangers_referrers_change_no_outcome(registry, tmp_path, monkeypatch, cli, request):
    w, url, vkey = _publisher(tmp_path, monkeypatch, request)
    digest = _publish(w, registry, "1.0", COMMAND_BODY, log_url=url)
    ref = f"{registry.url}/acme/hello:1.0"
    _consumer(w, monkeypatch, tmp_path / "consumer", vkey, url)
    policy = _policy(w, tmp_path)
    assert cli("trust", ref, "--policy", policy).exit_code == 0
    baseline = json.loads(cli("trust", ref, "--policy", policy, "--json").stdout)

    # The stranger has push access and nothing else.
    _home(monkeypatch, tmp_path / "stranger")
    statement = Statement(
        (Subject.for_digest("acme/hello", digest),),
        PUBLICATION,
        {"namespace": "acme", "name": "hello"},
    )
    named_only = Envelope(
        INTOTO_PAYLOAD_TYPE, statement.to_bytes(), (Signature(w.alice.keyid, os.urandom(64)),)
    ).to_bytes()
    with open_repository(parse_reference(ref)) as repo:
        subject = repo.resolve(parse_reference(ref))[0]
        now = dt.datetime.now(dt.UTC)
        junk = attach_statement(
            repo, subject, b"{not json", None, predicate_type=PUBLICATION, keyids=[], now=now
        )
        forged = attach_statement(
            repo,
            subject,
            named_only,
            None,
            predicate_type=PUBLICATION,
            keyids=[w.alice.keyid],
            now=now,
        )
    assert isinstance(junk, Descriptor)

    _home(monkeypatch, tmp_path / "consumer")
    r = cli("verify", ref)
    assert r.exit_code == 0, r.stderr
    assert "ignored     2 referrer(s) nobody you trust signed (-v: why)" in r.stdout
    r = cli("verify", ref, "-v")
    assert r.exit_code == 0, r.stderr
    assert f"ignored     {junk.digest[:19]}: " in r.stdout and "not valid JSON" in r.stdout
    assert f"ignored     {forged.digest[:19]}: names trusted key {w.alice.keyid[:16]}" in r.stdout

    r = cli("trust", ref, "--policy", policy, "--json")
    assert r.exit_code == 0, r.stdout
    after = json.loads(r.stdout)
    assert [(a["area"], a["status"]) for a in after["areas"]] == [
        (a["area"], a["status"]) for a in baseline["areas"]
    ]
    r = cli("trust", ref, "--policy", policy, "-v")
    assert "ignored: it names key" in r.stdout and "not valid JSON" in r.stdout

    # ... and the genuine package still runs (pull carries the junk along, harmlessly).
    assert cli("pull", ref).exit_code == 0
    r = cli("run", "acme/hello:1.0", "--trust-policy", policy)
    assert r.exit_code == 0, r.stderr


# -- fault 3: behind is not forked -------------------------------------------------------------


def _two_packages_in_a_served_log(w, registry, tmp_path, monkeypatch, request):
    """Publisher: a served log, acme/hello:1.0 at entry 0 and :2.0 at entry 1 (size 2)."""
    _home(monkeypatch, tmp_path / "publisher")
    w.delegate(w.alice)
    log_dir = tmp_path / "publisher" / "tlog"
    open_log().close()
    served = start(["log", "serve"], env_home=tmp_path / "publisher")
    request.addfinalizer(served.stop)
    _publish(w, registry, "1.0", b"one", release=False, log_url=served.url)
    shutil.copytree(log_dir, tmp_path / "stale-log")  # a backup taken at size 1
    _publish(w, registry, "2.0", b"two", release=False, log_url=served.url)
    return served, _log_vkey()


def test_a_log_that_is_behind_cannot_check_and_is_not_a_fork(
    registry, tmp_path, monkeypatch, request, cli
):
    w = World(tmp_path / "acme-root", tmp_path)
    served, vkey = _two_packages_in_a_served_log(w, registry, tmp_path, monkeypatch, request)
    served.stop()
    # The log comes back from the backup: it serves a tree of 1 entry.
    stale_home = tmp_path / "stale-home"
    shutil.copytree(tmp_path / "stale-log", stale_home / "tlog")
    stale = start(["log", "serve"], env_home=stale_home)
    request.addfinalizer(stale.stop)

    _consumer(w, monkeypatch, tmp_path / "consumer", vkey, stale.url)
    r = cli("verify", f"{registry.url}/acme/hello:2.0", "--unsafe-skip-fork-check")
    assert r.exit_code == 0, r.stderr  # remembers the checkpoint of size 2
    r = cli("verify", f"{registry.url}/acme/hello:1.0")  # proved at size 1: needs 1 -> 2
    assert r.exit_code == 1
    assert "cannot check: the log" in r.stderr and "is behind (it serves a tree of 1" in r.stderr
    assert "forked" not in r.stderr
    assert not (tmp_path / "consumer" / "tlog" / "forks").exists()


def test_a_real_fork_keeps_both_signed_checkpoints_in_a_file_it_names(
    registry, tmp_path, monkeypatch, request, cli
):
    w = World(tmp_path / "acme-root", tmp_path)
    served, vkey = _two_packages_in_a_served_log(w, registry, tmp_path, monkeypatch, request)
    _consumer(w, monkeypatch, tmp_path / "consumer", vkey, served.url)
    assert cli("verify", f"{registry.url}/acme/hello:2.0").exit_code == 0  # saw size 2
    served.stop()
    # The operator rewrites history with the same key: entry 0 kept, a different entry 1.
    _home(monkeypatch, tmp_path / "publisher")
    for f in (tmp_path / "publisher" / "tlog").glob("log.db*"):
        f.unlink()
    forked = open_log()
    forked.append(_entry_zero(tmp_path))
    forked.append(b"another history")
    forked.checkpoint()
    forked.close()
    again = start(["log", "serve"], env_home=tmp_path / "publisher")
    request.addfinalizer(again.stop)
    # A statement proved against the rewritten log's checkpoint (size 2, another root).
    _publish(w, registry, "3.0", b"three", release=False, log_url=again.url)

    _home(monkeypatch, tmp_path / "consumer")
    add_trusted(vkey, again.url)
    r = cli("verify", f"{registry.url}/acme/hello:3.0", "--log", again.url)
    assert r.exit_code == 1
    assert "forked" in r.stderr and "both signed checkpoints are kept as evidence in" in r.stderr
    path = r.stderr.split("kept as evidence in ", 1)[1].split()[0].rstrip(";")
    with open(path, "rb") as f:
        kept = f.read()
    assert kept.count(b"\n\xe2\x80\x94 ") >= 2  # two signature lines: both notes, as signed


def _entry_zero(tmp_path) -> bytes:
    import sqlite3

    conn = sqlite3.connect(tmp_path / "stale-log" / "log.db")
    (data,) = conn.execute("SELECT data FROM entries WHERE idx = 0").fetchone()
    conn.close()
    return data


# -- Sigstore bundles travel as OCI referrers -----------------------------------------------


def test_a_sigstore_bundle_referrer_is_pulled_with_the_package(registry, tmp_path, monkeypatch):
    """cosign 3 / sigstore-python attach a bundle as an OCI 1.1 referrer (artifactType and
    layer application/vnd.dev.sigstore.bundle.v0.3+json); a pull carries it along, like
    motte's own statements, and the local copy reads back byte for byte."""
    from motte.oci import LocalRepository, Manifest, read_referrers
    from tests.conftest import shared_testdata

    bundle = shared_testdata("sigstore", "happy-path-v0.3.sigstore.json").read_bytes()
    _home(monkeypatch, tmp_path / "publisher")
    import subprocess

    w = World(tmp_path / "acme-root", tmp_path)
    repo_dir, _ = w.source("src", b"x")
    subprocess.run(["sh", "build.sh"], cwd=repo_dir, check=True)
    build_package(repo_dir, parse_reference("acme/hello:1.0"))
    ref = parse_reference(f"{registry.url}/acme/hello:1.0")
    push(ref)
    with open_repository(ref) as repo:
        subject = repo.resolve(ref)[0]
        empty = Descriptor.of(mt.OCI_EMPTY, mt.OCI_EMPTY_BYTES)
        layer = Descriptor.of(mt.SIGSTORE_BUNDLE_V03, bundle)
        manifest = Manifest(
            config=empty,
            layers=(layer,),
            artifact_type=mt.SIGSTORE_BUNDLE_V03,
            subject=Descriptor(subject.media_type, subject.digest, subject.size),
            annotations={"dev.sigstore.bundle.content": "message-signature"},
        )
        data = manifest.to_bytes()
        desc = Descriptor.of(mt.OCI_MANIFEST, data)
        with repo.session() as sink:
            for d, blob in ((empty, mt.OCI_EMPTY_BYTES), (layer, bundle)):
                sink.put_blob(d, iter([blob]), "blob", advance=lambda n: None)
            sink.put_manifest(desc, data, subject=subject.digest)

    _home(monkeypatch, tmp_path / "consumer")
    from motte.oci import pull

    pulled = pull(ref)
    assert desc.digest in pulled.referrers
    local = LocalRepository(parse_reference("acme/hello:1.0"))
    found = read_referrers(local, subject.digest, artifact_types=mt.SIGSTORE_BUNDLE_ARTIFACTS)
    assert [r.desc.digest for r in found] == [desc.digest]
    assert local.blob(found[0].manifest.layers[0], "bundle") == bundle
