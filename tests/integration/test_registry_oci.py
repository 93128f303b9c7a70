"""Push and pull against a real OCI registry: Debian's docker-registry, started on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from motte.oci import (
    ArtifactNotFoundError,
    DigestMismatchError,
    LocalStore,
    build_package,
    load_workload,
    parse_reference,
    pull,
    push,
)
from motte.oci import _mediatypes as mt
from motte.sign import (
    DEFAULT_BUILDER,
    attest_build,
    generate_key,
    policy_from_keys,
    sign_artifact,
    verify_artifact,
)
from tests.oci.registry_server import ReferrersProxy, run_registry
from tests.oci.workloads import make_workload

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(tmp_path):
    with run_registry(tmp_path) as reg:
        yield reg


def publish(tmp_path, *, size: int = 50_000):
    """Package acme/hello:1.0, sign it and attest its build; return (digest, key, log vkey)."""
    from motte.tlog import open_log

    result = build_package(
        make_workload(tmp_path / "w", size=size), parse_reference("acme/hello:1.0")
    )
    key = generate_key()
    sign_artifact("acme/hello:1.0", [key])
    attest_build(
        "acme/hello:1.0",
        [key],
        source="https://git.example/acme/hello",
        commit="a" * 40,
        builder=DEFAULT_BUILDER,
    )
    log = open_log()
    vkey = log.verifier_key
    log.close()
    return result.digest, key, vkey


def fresh_home(
    tmp_path, monkeypatch, name: str, log_vkey: str | None = None, log_url: str | None = None
):
    home = tmp_path / name
    monkeypatch.setenv("MOTTE_HOME", str(home))
    if log_vkey:
        from motte.tlog import add_trusted

        add_trusted(log_vkey, log_url)
    return home


def serve_publisher_log(request) -> str:
    """Serve this home's log: a consumer needs its URL to check two checkpoints don't fork."""
    from motte.home import motte_home
    from tests.tlog._servers import start

    served = start(["log", "serve"], env_home=motte_home())
    request.addfinalizer(served.stop)
    return served.url


def store_is_empty() -> bool:
    store = LocalStore()
    blobs = list((store.root / "blobs" / "sha256").glob("*")) if store.root.exists() else []
    ingest = list((store.root / "ingest").iterdir()) if (store.root / "ingest").exists() else []
    return not blobs and not ingest and not store.index().manifests


def test_push_pull_round_trip_with_attestations(registry, tmp_path, monkeypatch, request):
    digest, key, vkey = publish(tmp_path)
    log_url = serve_publisher_log(request)
    ref = parse_reference(f"{registry.url}/acme/hello:1.0")

    first = push(ref)
    assert first.digest == digest
    assert first.blobs_copied == 3 + 1 + 2 * 2  # config, Motte.toml, module; {}; envelope+proof x2
    assert len(first.referrers) == 2
    again = push(ref)
    assert again.blobs_copied == 0 and again.bytes_copied == 0

    # What the registry holds: the tag, and the referrers tag schema index (no referrers API).
    r = httpx.get(
        f"{registry.url}/v2/acme/hello/manifests/1.0", headers={"Accept": mt.OCI_MANIFEST}
    )
    assert "sha256:" + hashlib.sha256(r.content).hexdigest() == digest
    assert httpx.get(f"{registry.url}/v2/acme/hello/referrers/{digest}").status_code == 404
    fallback = httpx.get(
        f"{registry.url}/v2/acme/hello/manifests/sha256-{digest[7:]}",
        headers={"Accept": mt.OCI_INDEX},
    )
    entries = json.loads(fallback.content)["manifests"]
    assert {e["artifactType"] for e in entries} == {mt.ATTESTATION_ARTIFACT}
    assert {e["annotations"][mt.ANN_PREDICATE_TYPE] for e in entries} == {
        "https://motte.dev/attestation/publication/v1",
        "https://slsa.dev/provenance/v1",
    }

    fresh_home(tmp_path, monkeypatch, "consumer", vkey, log_url)
    pulled = pull(ref)
    assert pulled.digest == digest and len(pulled.referrers) == 2
    loaded = load_workload("acme/hello:1.0")
    assert loaded.module == (tmp_path / "w" / "hello.wasm").read_bytes()
    result = verify_artifact("acme/hello:1.0", policy_from_keys([key.public]))
    assert result.publishers == (key.keyid,)
    assert {s.kind for s in result.statements} == {"publication", "provenance"}
    # ... and straight from the registry, without pulling.
    remote = verify_artifact(f"{registry.url}/acme/hello:1.0", policy_from_keys([key.public]))
    assert remote.digest == digest


def test_referrers_api_is_used_when_the_registry_has_it(registry, tmp_path, monkeypatch, request):
    digest, key, vkey = publish(tmp_path)
    log_url = serve_publisher_log(request)
    with ReferrersProxy(registry.url) as proxy:
        push(parse_reference(f"{proxy.url}/acme/hello:1.0"))
        assert len(proxy.referrers[("acme/hello", digest)]) == 2
        # The registry said OCI-Subject, so no client-side sha256-<hex> index was written.
        assert (
            httpx.get(f"{registry.url}/v2/acme/hello/manifests/sha256-{digest[7:]}").status_code
            == 404
        )

        fresh_home(tmp_path, monkeypatch, "consumer", vkey, log_url)
        proxy.requests.clear()
        pulled = pull(parse_reference(f"{proxy.url}/acme/hello:1.0"))
        assert len(pulled.referrers) == 2
        assert ("GET", f"/v2/acme/hello/referrers/{digest}") in proxy.requests
    verify_artifact("acme/hello:1.0", policy_from_keys([key.public]))


def test_a_tag_is_resolved_once_then_only_digests_are_used(registry, tmp_path, monkeypatch):
    publish(tmp_path)
    push(parse_reference(f"{registry.url}/acme/hello:1.0"))
    fresh_home(tmp_path, monkeypatch, "consumer")
    with ReferrersProxy(registry.url) as proxy:
        pull(parse_reference(f"{proxy.url}/acme/hello:1.0"))
    manifest_gets = [p for m, p in proxy.requests if m == "GET" and "/manifests/" in p]
    by_tag = [p for p in manifest_gets if p.endswith("/manifests/1.0")]
    assert len(by_tag) == 1
    assert all(p.endswith("/manifests/1.0") or "sha256:" in p for p in manifest_gets)
    assert all("sha256:" in p for m, p in proxy.requests if "/blobs/" in p)


def test_chunked_upload(registry, tmp_path, monkeypatch):
    import motte.oci._registry as client

    monkeypatch.setattr(client, "UPLOAD_CHUNK", 64 * 1024)
    build_package(make_workload(tmp_path / "w", size=300_000), parse_reference("acme/big:1"))
    with ReferrersProxy(registry.url) as proxy:
        push(parse_reference(f"{proxy.url}/acme/big:1"))
    patches = [p for m, p in proxy.requests if m == "PATCH"]
    assert len(patches) >= 5  # 300 kB in 64 KiB chunks, each PATCHed in order
    fresh_home(tmp_path, monkeypatch, "consumer")
    pull(parse_reference(f"{registry.url}/acme/big:1"))
    assert load_workload("acme/big:1").module == (tmp_path / "w" / "hello.wasm").read_bytes()


def test_a_changed_blob_in_the_registry_fails_the_pull_and_leaves_nothing(
    registry, tmp_path, monkeypatch
):
    result = build_package(
        make_workload(tmp_path / "w", size=20_000), parse_reference("acme/hello:1")
    )
    ref = parse_reference(f"{registry.url}/acme/hello:1")
    push(ref)
    module_digest = load_workload("acme/hello:1").module
    module_digest = "sha256:" + hashlib.sha256(module_digest).hexdigest()
    blob = registry.blob_file(module_digest)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF  # same size, different content
    blob.write_bytes(bytes(data))

    fresh_home(tmp_path, monkeypatch, "consumer")
    with pytest.raises(DigestMismatchError) as e:
        pull(ref)
    assert e.value.message.startswith(f"hello.wasm of acme/hello@{result.digest}: digest mismatch")
    assert store_is_empty()
    with pytest.raises(DigestMismatchError, match=r"layer hello\.wasm"):
        load_workload(f"{registry.url}/acme/hello@{result.digest}")


def test_an_interrupted_pull_leaves_nothing(registry, tmp_path, monkeypatch):
    build_package(make_workload(tmp_path / "w", size=3 << 20), parse_reference("acme/hello:1"))
    ref = parse_reference(f"{registry.url}/acme/hello:1")
    push(ref)
    fresh_home(tmp_path, monkeypatch, "consumer")

    class CtrlC:
        def task(self, description, total):
            import contextlib

            @contextlib.contextmanager
            def run():
                def advance(n):
                    if "hello.wasm" in description:
                        raise KeyboardInterrupt

                yield advance

            return run()

    with pytest.raises(KeyboardInterrupt):
        pull(ref, progress=CtrlC())
    assert store_is_empty()
    pull(ref)  # and a second attempt completes
    assert not store_is_empty()


def test_missing_tags_are_not_found(registry, tmp_path):
    with pytest.raises(ArtifactNotFoundError, match="not found"):
        pull(parse_reference(f"{registry.url}/acme/nothing:1"))


def test_sign_and_verify_directly_in_the_registry(registry, tmp_path, monkeypatch):
    from motte.tlog import open_log

    build_package(make_workload(tmp_path / "w"), parse_reference("acme/hello:1.0"))
    ref = f"{registry.url}/acme/hello:1.0"
    push(parse_reference(ref))
    key = generate_key("ecdsa-p256")
    signed = sign_artifact(ref, [key])  # the statement goes straight to the registry
    with open_log() as log:
        vkey = log.verifier_key
    fresh_home(tmp_path, monkeypatch, "consumer", vkey)
    result = verify_artifact(ref, policy_from_keys([key.public]))
    assert result.publishers == (key.keyid,)
    assert result.statements[0].referrer == signed.referrer
    assert not LocalStore().root.exists()  # verifying a registry copy writes nothing locally
