"""Starting a Keep with a Steward: attest first, then fetch by the attested digest.

A real Steward serves on 127.0.0.1 in this process; the Keep side is the library that
``motte run`` calls. Ordering is shown by what each party records, not by mocks: the
Steward's audit log, and which error the Keep stops with."""

from __future__ import annotations

import json
import shutil

import pytest

from motte.errors import UsageError
from motte.keep import launch
from motte.keep.backends import BackendError
from motte.oci import DigestMismatchError, build_package, parse_reference
from motte.steward import AttestationRefusedError
from tests.keep.conftest import EXAMPLES
from tests.steward.helpers import make_steward
from tests.steward.servers import steward_server

HELLO = EXAMPLES / "hello"


@pytest.fixture
def steward(tmp_path):
    with make_steward(tmp_path / "steward") as s, steward_server(s) as url:
        s.url = url
        yield s


@pytest.fixture
def strict_steward(tmp_path):
    """A Steward with the default policy: it refuses sim keeps."""
    with make_steward(tmp_path / "strict", allow_insecure_sim=False) as s, steward_server(s) as url:
        s.url = url
        yield s


def sim(steward, target, **kw):
    return launch(target, steward=steward.url, backend="sim", allow_insecure_sim=True, **kw)


def package(tmp_path, tag="acme/hello:1.0", manifest_extra: str = ""):
    d = tmp_path / "pkg"
    shutil.copytree(HELLO, d)
    if manifest_extra:  # top-level keys go before the first table
        (d / "Motte.toml").write_text(manifest_extra + (d / "Motte.toml").read_text())
    return build_package(d, parse_reference(tag))


def test_a_local_module_is_attested_with_its_own_digest(steward):
    launched = sim(steward, str(HELLO / "hello.wasm"))
    assert launched.identity is not None
    assert launched.digest == launched.workload.digest  # the module's digest, for a file
    assert launched.identity.certificate.workload_digest == launched.digest
    [row] = steward.store.audit()
    assert (row.decision, row.workload_digest) == ("accepted", launched.digest)
    result = launched.workload.run(stdout="capture")
    assert result.exit_code == 0 and result.stdout.startswith(b"Hello, world!")


def test_a_package_is_attested_with_the_package_digest_then_fetched(steward, tmp_path):
    built = package(tmp_path)
    launched = sim(steward, "acme/hello:1.0")
    assert launched.digest == built.digest != launched.workload.digest
    assert launched.identity.certificate.workload_digest == built.digest
    assert str(launched.reference) == f"acme/hello:1.0@{built.digest}"
    assert steward.store.audit()[0].workload_digest == built.digest
    assert launched.workload.run(stdout="capture").exit_code == 0


def corrupt_module(built) -> None:
    from motte.home import motte_home
    from motte.oci import LocalStore, Manifest
    from motte.oci._package import workload_layers

    store = LocalStore()
    desc = store.find_manifest(built.digest)
    manifest = Manifest.from_bytes(store.read_blob(desc, "m", limit=1 << 20))
    module = workload_layers(manifest).module
    path = motte_home() / "oci" / "blobs" / "sha256" / module.digest.split(":")[1]
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def test_bytes_that_differ_from_the_attested_digest_are_refused_after_attesting(steward, tmp_path):
    corrupt_module(package(tmp_path))
    with pytest.raises(DigestMismatchError):
        sim(steward, "acme/hello:1.0")
    # The Steward had already certified this Keep for the package digest: attest, then fetch.
    assert [r.decision for r in steward.store.audit()] == ["accepted"]


def test_a_refused_keep_fetches_nothing(strict_steward, tmp_path):
    corrupt_module(package(tmp_path))
    # Were the package fetched first, this would be the digest mismatch above.
    with pytest.raises(AttestationRefusedError, match="refused this Keep: kind: sim evidence"):
        sim(strict_steward, "acme/hello:1.0")


def test_a_mistyped_path_is_not_mistaken_for_a_package():
    from motte.errors import NotFoundError

    with pytest.raises(NotFoundError, match="examples/helo: no such file or directory, and no"):
        launch("examples/helo")


def test_a_package_that_names_a_steward_must_be_run_with_one(tmp_path):
    package(tmp_path, manifest_extra='steward = "https://steward.example"\n')
    with pytest.raises(UsageError, match="not attested before fetching it") as e:
        launch("acme/hello:1.0")
    assert "--steward https://steward.example" in (e.value.hint or "")


def test_a_digest_named_workload_is_attested_before_it_is_read(steward, tmp_path):
    from motte.keep import file_digest

    digest = file_digest(HELLO / "hello.wasm")
    manifest = tmp_path / "Motte.toml"
    manifest.write_text(f'workload = "{digest}"\n')
    with pytest.raises(Exception, match="not in the local store"):
        sim(steward, str(manifest))
    assert [(r.decision, r.workload_digest) for r in steward.store.audit()] == [
        ("accepted", digest)
    ]


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"backend": "sim"}, "--backend needs a Steward"), ({"sans": ["a"]}, "--san needs")],
)
def test_attestation_flags_need_a_steward(kw, message):
    with pytest.raises(UsageError, match=message):
        launch(str(HELLO), **kw)


def test_sim_needs_consent_and_is_never_chosen_for_you(steward):
    with pytest.raises(UsageError, match="needs --allow-insecure-sim"):
        launch(str(HELLO), steward=steward.url, backend="sim")
    with pytest.raises(BackendError, match="no TEE backend is available"):
        launch(str(HELLO), steward=steward.url, allow_insecure_sim=True)
    assert steward.store.audit() == []  # the Steward was never asked


def test_motte_run_with_a_steward(steward, cli):
    r = cli(
        "run",
        HELLO / "hello.wasm",
        "--steward",
        steward.url,
        "--backend",
        "sim",
        "--allow-insecure-sim",
        "--json",
        "--",
        "Ann",
    )
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["attestation"]["backend"] == "sim"
    assert doc["attestation"]["certificate"]["workload_digest"] == doc["workload_digest"]
    assert doc["stdout"].startswith("Hello, Ann!")
    assert "motte: attested by http://127.0.0.1" in r.stderr and "INSECURE" in r.stderr


def test_motte_run_refused_by_the_steward_exits_125_with_the_reasons(strict_steward, cli):
    r = cli(
        "run",
        HELLO,
        "--steward",
        strict_steward.url,
        "--backend",
        "sim",
        "--allow-insecure-sim",
    )
    assert r.exit_code == 125
    assert "refused this Keep: kind: sim evidence comes from an INSECURE software keep" in r.stderr
    assert "motte steward audit" in r.stderr
