"""Attest before fetch from a real OCI registry (Debian's docker-registry on 127.0.0.1): the
Keep resolves the tag, attests the package digest, and only then pulls, verifying every byte."""

from __future__ import annotations

import pytest

from motte.keep import launch
from motte.oci import DigestMismatchError, LocalStore, build_package, parse_reference, push
from tests.keep.conftest import EXAMPLES
from tests.oci.registry_server import run_registry
from tests.steward.helpers import make_steward
from tests.steward.servers import steward_server

pytestmark = pytest.mark.integration


@pytest.fixture
def published(tmp_path, monkeypatch):
    """acme/hello:1.0 pushed to a registry from a publisher's home; the test then runs as a
    fresh machine (its own MOTTE_HOME) that has never seen the package."""
    with run_registry(tmp_path) as registry:
        monkeypatch.setenv("MOTTE_HOME", str(tmp_path / "publisher"))
        built = build_package(EXAMPLES / "hello", parse_reference("acme/hello:1.0"))
        push(parse_reference(f"{registry.url}/acme/hello:1.0"))
        monkeypatch.setenv("MOTTE_HOME", str(tmp_path / "keep-host"))
        with make_steward(tmp_path / "steward") as steward, steward_server(steward) as url:
            yield registry, built, steward, url


def module_digest(package_digest: str) -> str:
    from motte.oci import Manifest
    from motte.oci._package import workload_layers

    store = LocalStore()
    data = store.read_blob(store.find_manifest(package_digest), "m", limit=1 << 20)
    return workload_layers(Manifest.from_bytes(data)).module.digest


def test_a_registry_package_is_attested_then_pulled_and_run(published):
    registry, built, steward, url = published
    assert steward.store.audit() == []
    launched = launch(
        f"{registry.url}/acme/hello:1.0", steward=url, backend="sim", allow_insecure_sim=True
    )
    assert launched.digest == built.digest
    assert launched.identity.certificate.workload_digest == built.digest
    assert LocalStore().find_manifest(built.digest)  # pulled into this host's store
    assert launched.workload.run(stdout="capture").stdout.startswith(b"Hello, world!")
    assert [r.workload_digest for r in steward.store.audit()] == [built.digest]


def test_tampered_registry_bytes_are_refused_after_attesting(published, tmp_path, monkeypatch):
    registry, built, steward, url = published
    monkeypatch.setenv("MOTTE_HOME", str(tmp_path / "publisher"))
    blob = registry.blob_file(module_digest(built.digest))
    monkeypatch.setenv("MOTTE_HOME", str(tmp_path / "keep-host"))
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError):
        launch(
            f"{registry.url}/acme/hello:1.0", steward=url, backend="sim", allow_insecure_sim=True
        )
    assert [r.decision for r in steward.store.audit()] == ["accepted"]
