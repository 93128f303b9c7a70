import json
import os

import pytest

from motte.errors import ConfigError
from motte.oci import (
    DigestMismatchError,
    LocalStore,
    MalformedArtifactError,
    Manifest,
    PackageError,
    build_package,
    load_workload,
    open_package,
    parse_reference,
    workload_layers,
)
from motte.oci import _mediatypes as mt
from tests.oci.workloads import make_workload

REF = parse_reference("acme/hello:1.0")


def test_package_then_load_returns_the_verified_bytes(tmp_path):
    wl = make_workload(tmp_path / "w", size=10_000)
    result = build_package(wl, REF)
    loaded = load_workload("acme/hello:1.0")
    assert loaded.digest == result.digest
    assert loaded.reference.digest == result.digest
    assert loaded.module == (wl / "hello.wasm").read_bytes()
    assert loaded.manifest == (wl / "Motte.toml").read_bytes()
    assert load_workload(f"acme/hello@{result.digest}").module == loaded.module


def test_open_package_is_the_one_verified_value_with_its_referrers(tmp_path):
    from motte._digest import sha256_digest

    wl = make_workload(tmp_path / "w", size=10_000)
    result = build_package(wl, REF)
    package = open_package("acme/hello:1.0")
    assert package.digest == result.digest
    assert package.module_digest == sha256_digest(package.module)
    assert package.attachments == () and package.skipped_referrers == ()  # none signed
    assert open_package("acme/hello:1.0", attachments=False).attachments is None
    assert load_workload("acme/hello:1.0").attachments is None


def test_artifact_shape(tmp_path):
    result = build_package(make_workload(tmp_path / "w"), REF)
    store = LocalStore()
    manifest = Manifest.from_bytes(store.blob_path(result.digest).read_bytes())
    assert manifest.artifact_type == mt.WORKLOAD_ARTIFACT
    assert manifest.config.media_type == mt.WORKLOAD_CONFIG
    assert [layer.media_type for layer in manifest.layers] == [
        mt.MOTTE_MANIFEST_LAYER,
        mt.MOTTE_MODULE_LAYER,
        mt.WASM_LAYER,
    ]
    assert manifest.layers[1].digest == manifest.layers[2].digest
    assert manifest.layers[0].annotations[mt.ANN_TITLE] == "Motte.toml"
    assert manifest.layers[2].annotations[mt.ANN_TITLE] == "hello.wasm"


def test_digest_covers_module_and_manifest_and_is_reproducible(tmp_path):
    a = build_package(make_workload(tmp_path / "a", seed=1), REF).digest
    assert build_package(make_workload(tmp_path / "a2", seed=1), REF).digest == a
    assert build_package(make_workload(tmp_path / "b", seed=2), REF).digest != a
    changed_toml = make_workload(tmp_path / "c", seed=1)
    (changed_toml / "Motte.toml").write_text('workload = "hello.wasm"\n# changed\n')
    assert build_package(changed_toml, REF).digest != a


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        (lambda d: (d / "Motte.toml").unlink(), "no Motte.toml"),
        (lambda d: (d / "Motte.toml").write_text("args = ['x']\n"), "workload"),
        (lambda d: (d / "Motte.toml").write_text("workload = [\n"), "TOML"),
        (
            lambda d: (d / "Motte.toml").write_text('workload = "../x.wasm"\n'),
            "relative path inside",
        ),
        (
            lambda d: (d / "Motte.toml").write_text('workload = "/etc/passwd"\n'),
            "relative path inside",
        ),
        (lambda d: (d / "hello.wasm").unlink(), "is not a file"),
        (lambda d: (d / "hello.wasm").write_bytes(b"MZ\x90\x00"), "not a WebAssembly binary"),
    ],
)
def test_bad_workload_directories(tmp_path, setup, needle):
    wl = make_workload(tmp_path / "w")
    setup(wl)
    # PackageError, or motte.manifest's own error for a Motte.toml it refuses: both are
    # configuration errors naming the file.
    with pytest.raises(ConfigError) as e:
        build_package(wl, REF)
    assert needle in e.value.message
    assert not (LocalStore().root / "index.json").exists()


def test_a_symlink_out_of_the_directory_is_refused(tmp_path):
    outside = tmp_path / "secret.wasm"
    outside.write_bytes(b"\0asm\x01\0\0\0")
    wl = make_workload(tmp_path / "w")
    (wl / "hello.wasm").unlink()
    os.symlink(outside, wl / "hello.wasm")
    with pytest.raises(PackageError, match="resolves outside"):
        build_package(wl, REF)


def _blob(store: LocalStore, digest: str):
    return store.blob_path(digest)


def test_a_changed_layer_is_detected_and_named(tmp_path):
    result = build_package(make_workload(tmp_path / "w"), REF)
    store = LocalStore()
    manifest = Manifest.from_bytes(_blob(store, result.digest).read_bytes())
    module = _blob(store, manifest.layers[1].digest)
    data = bytearray(module.read_bytes())
    data[-1] ^= 1
    module.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError) as e:
        load_workload("acme/hello:1.0")
    assert e.value.message.startswith(f"layer hello.wasm of acme/hello@{result.digest}")

    toml = _blob(store, manifest.layers[0].digest)
    toml.write_text('workload = "other.wasm"\n')
    with pytest.raises(DigestMismatchError, match="layer Motte"):
        load_workload("acme/hello:1.0")


def test_a_changed_manifest_is_detected_and_named(tmp_path):
    result = build_package(make_workload(tmp_path / "w"), REF)
    path = _blob(LocalStore(), result.digest)
    doc = json.loads(path.read_bytes())
    doc["annotations"] = {"evil": "yes"}
    path.write_bytes(json.dumps(doc).encode())
    with pytest.raises(DigestMismatchError) as e:
        load_workload("acme/hello:1.0")
    assert "manifest of acme/hello:1.0" in e.value.message


def test_a_wasm_layer_other_than_the_module_is_rejected(tmp_path):
    result = build_package(make_workload(tmp_path / "w"), REF)
    m = Manifest.from_bytes(_blob(LocalStore(), result.digest).read_bytes())
    other = m.layers[0]  # any other blob
    wasm = type(other)(mt.WASM_LAYER, other.digest, other.size)
    forged = Manifest(m.config, (m.layers[0], m.layers[1], wasm), m.artifact_type)
    with pytest.raises(MalformedArtifactError, match="other tools would run a different module"):
        workload_layers(forged)


def test_only_motte_workloads_are_loaded(tmp_path):
    result = build_package(make_workload(tmp_path / "w"), REF)
    m = Manifest.from_bytes(_blob(LocalStore(), result.digest).read_bytes())
    with pytest.raises(MalformedArtifactError, match="not a motte workload"):
        workload_layers(Manifest(m.config, m.layers, "application/vnd.example"))
    extra = type(m.layers[0])("application/x-unknown", m.layers[0].digest, m.layers[0].size)
    with pytest.raises(MalformedArtifactError, match="unknown mediaType"):
        workload_layers(Manifest(m.config, (*m.layers, extra), m.artifact_type))


def test_the_manifest_is_validated_as_motte_run_would(tmp_path):
    wl = make_workload(tmp_path / "w")
    (wl / "Motte.toml").write_text('workload = "hello.wasm"\nno_such_key = 1\n')
    with pytest.raises(ConfigError, match="no_such_key"):
        build_package(wl, REF)
    (wl / "Motte.toml").write_text(f'workload = "sha256:{"a" * 64}"\n')
    with pytest.raises(PackageError, match="a package needs the module"):
        build_package(wl, REF)
