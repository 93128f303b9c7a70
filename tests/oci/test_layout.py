import json

import pytest

from motte.oci import ArtifactNotFoundError, Descriptor, DigestMismatchError, LocalStore
from motte.oci._layout import ANN_SUBJECT
from motte.oci._mediatypes import ANN_REF_NAME, OCI_MANIFEST


def _entry(data: bytes, ref_name: str | None = None) -> Descriptor:
    ann = {ANN_REF_NAME: ref_name} if ref_name else {}
    return Descriptor.of(OCI_MANIFEST, data, annotations=ann)


def test_layout_files_follow_the_image_layout_spec(tmp_path):
    store = LocalStore(tmp_path / "oci")
    data = b'{"schemaVersion":2}'
    with store.staging() as s:
        desc = _entry(data, "acme/hello:1")
        s.write_bytes(desc, data, "manifest")
        s.add_entry(desc)
    assert json.loads((tmp_path / "oci" / "oci-layout").read_text()) == {
        "imageLayoutVersion": "1.0.0"
    }
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["manifests"][0]["annotations"][ANN_REF_NAME] == "acme/hello:1"
    assert (tmp_path / "oci" / "blobs" / "sha256" / desc.digest.split(":")[1]).read_bytes() == data


def test_retagging_replaces_and_digest_entries_dedupe(tmp_path):
    store = LocalStore(tmp_path)
    a, b = b"a", b"b"
    for data in (a, b):
        with store.staging() as s:
            s.write_bytes(_entry(data), data, "m")
            s.add_entry(_entry(data, "acme/x:1"))
            s.add_entry(_entry(data))
            s.add_entry(_entry(data))
    assert store.resolve_tag("acme/x", "1").digest == _entry(b).digest
    names = [d.annotations.get(ANN_REF_NAME) for d in store.index().manifests]
    assert names.count("acme/x:1") == 1
    assert len(store.index().manifests) == 3  # one tag, one untagged entry per digest


def test_failure_in_a_staging_block_leaves_nothing(tmp_path):
    store = LocalStore(tmp_path)
    data = b"payload"
    with pytest.raises(RuntimeError), store.staging() as s:
        s.write_bytes(Descriptor.of("x", data), data, "blob")
        s.add_entry(_entry(data, "acme/x:1"))
        raise RuntimeError("interrupted")
    assert not store.has_blob(Descriptor.of("x", data).digest)
    assert not (tmp_path / "index.json").exists()
    assert list((tmp_path / "ingest").iterdir()) == []


def test_a_blob_that_does_not_match_is_never_staged(tmp_path):
    store = LocalStore(tmp_path)
    desc = Descriptor.of("x", b"expected")
    with pytest.raises(DigestMismatchError) as e, store.staging() as s:
        s.write_blob(desc, iter([b"tampered"]), "layer hello.wasm", limit=100)
    assert e.value.what == "layer hello.wasm"
    assert not store.has_blob(desc.digest)


def test_reading_a_changed_blob_names_it(tmp_path):
    store = LocalStore(tmp_path)
    desc = Descriptor.of("x", b"original")
    with store.staging() as s:
        s.write_bytes(desc, b"original", "b")
    store.blob_path(desc.digest).write_bytes(b"modified")
    with pytest.raises(DigestMismatchError, match=r"layer Motte\.toml"):
        store.read_blob(desc, "layer Motte.toml")
    with pytest.raises(DigestMismatchError, match="the module"):
        b"".join(store.iter_blob(desc, "the module", limit=100, advance=lambda n: None))


def test_missing_tag_and_blob_are_not_found(tmp_path):
    store = LocalStore(tmp_path)
    with pytest.raises(ArtifactNotFoundError, match="acme/x:1"):
        store.resolve_tag("acme/x", "1")
    with pytest.raises(ArtifactNotFoundError):
        store.read_blob(Descriptor.of("x", b"nope"), "blob")


def test_referrers_are_found_by_subject(tmp_path):
    store = LocalStore(tmp_path)
    entry = Descriptor(
        OCI_MANIFEST, "sha256:" + "1" * 64, 3, "t", {ANN_SUBJECT: "sha256:" + "2" * 64}
    )
    with store.staging() as s:
        s.add_entry(entry)
    assert store.referrers("sha256:" + "2" * 64) == [entry]
    assert store.referrers("sha256:" + "3" * 64) == []


def _package_in_process(args):
    import os

    home, i = args
    os.environ["MOTTE_HOME"] = home
    from motte.oci import build_package, parse_reference
    from tests.oci.workloads import make_workload

    wl = make_workload(__import__("pathlib").Path(home) / f"w{i}", seed=i)
    return build_package(wl, parse_reference(f"acme/w{i}:1")).digest


def test_concurrent_writers_lose_no_tag(motte_home):
    """index.json is read, changed and replaced under a lock: no writer's tag is lost."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        digests = pool.map(_package_in_process, [(str(motte_home), i) for i in range(8)])
    store = LocalStore()
    assert {name: d.digest for name, d in store.tags()} == {
        f"acme/w{i}:1": digests[i] for i in range(8)
    }
