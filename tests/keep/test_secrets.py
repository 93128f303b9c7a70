"""Delivery into the guest: tmpfs files and environment variables, removed at stop; a Keep
that asks for secrets without a Steward is refused; an encrypted package whose plaintext is
not the signed one never runs (a real Steward served in this process, the sim keep)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from motte._nodump import dumpable
from motte.keep import PreparedWorkload, launch
from motte.keep._secrets import SecretDeliveryError, deliver, memory_dir
from motte.manifest import grants_from_flags, parse_manifest
from motte.oci import ContentKey, DecryptionError, build_package, parse_reference
from tests.keep.conftest import EXAMPLES
from tests.steward.helpers import make_steward
from tests.steward.servers import steward_server

SECRET_DB = EXAMPLES / "secret-db"


def manifest(text: str):
    return parse_manifest(f'workload = "a.wasm"\n{text}', base_dir=Path("/w"), name="Motte.toml")


def test_files_go_to_a_tmpfs_read_only_and_are_zeroed_and_removed():
    m = manifest(
        '[[secret]]\nname = "db"\nfile = "/run/secrets/db"\n'
        '[[secret]]\nname = "db"\nenv = "DB"\n[[secret]]\nname = "t"\nfile = "/etc/app/t"\n'
    )
    delivered = deliver(m, {"db": b"pw-1", "t": b"\0binary"})
    try:
        assert delivered.root is not None and delivered.root.parent == memory_dir()
        assert (delivered.root.stat().st_mode & 0o777) == 0o700
        assert sorted(g for _, g in delivered.dirs) == ["/etc/app", "/run/secrets"]
        host = dict((g, Path(h)) for h, g in delivered.dirs)
        assert (host["/run/secrets"] / "db").read_bytes() == b"pw-1"
        assert ((host["/etc/app"] / "t").stat().st_mode & 0o777) == 0o400
        assert delivered.env == {"DB": "pw-1"}
        assert "pw-1" not in repr(delivered)
    finally:
        root = delivered.root
        delivered.close()
    assert root is not None and not root.exists()


def test_a_value_that_cannot_be_a_variable_is_named_without_showing_it():
    m = manifest('[[secret]]\nname = "k"\nenv = "K"\n')
    with pytest.raises(SecretDeliveryError, match="not UTF-8 text without NUL") as e:
        deliver(m, {"k": b"a\0hidden"})
    assert "hidden" not in e.value.message


def test_a_directory_on_disk_is_refused(tmp_path, monkeypatch):
    if os.statvfs(tmp_path) and Path("/proc/self/mountinfo").exists():
        from motte.keep._secrets import _fs_type

        if _fs_type(tmp_path) in ("tmpfs", "ramfs"):
            pytest.skip(f"{tmp_path} is itself a tmpfs here")
    monkeypatch.setenv("MOTTE_SECRET_DIR", str(tmp_path))
    m = manifest('[[secret]]\nname = "db"\nfile = "/run/secrets/db"\n')
    with pytest.raises(SecretDeliveryError, match="not memory-backed"):
        deliver(m, {"db": b"pw"})
    assert list(tmp_path.iterdir()) == []


def test_a_guest_path_a_dir_already_preopens_is_refused(tmp_path):
    m = parse_manifest(
        f'workload = "a.wasm"\n[[dir]]\nhost = "{tmp_path}"\nguest = "/run/secrets"\n'
        '[[secret]]\nname = "db"\nfile = "/run/secrets/db"\n',
        base_dir=tmp_path,
        name="Motte.toml",
    )
    with pytest.raises(SecretDeliveryError, match="already preopens"):
        deliver(m, {"db": b"pw"})


def test_a_workload_asking_for_secrets_needs_a_steward():
    with pytest.raises(Exception, match="only an attested Keep can obtain them"):
        launch(str(SECRET_DB))


def test_the_guest_reads_the_delivered_file_and_variable():
    m = parse_manifest(
        (SECRET_DB / "Motte.toml").read_text(), base_dir=SECRET_DB, name="Motte.toml"
    )
    prepared = PreparedWorkload.prepare(m)
    delivered = deliver(m, {"db-password": b"s3cret"})
    try:
        prepared.deliver(delivered)
        r = prepared.run(
            env={"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, stdout="capture", stderr="capture"
        )
    finally:
        delivered.close()
    assert r.exit_code == 0, r.stderr
    assert b"password from /run/secrets/db-password (6 bytes)" in r.stdout
    assert b"DB_PASSWORD: the same value" in r.stdout
    assert b"s3cret" not in r.stdout


@pytest.fixture
def steward(tmp_path):
    s = make_steward(tmp_path / "steward")
    yield s
    s.close()


def test_an_encrypted_package_whose_plaintext_is_not_the_signed_one_never_runs(
    steward, tmp_path, monkeypatch
):
    from motte.oci import _package

    policy = steward.secrets  # noqa: F841 - the store exists before the key goes in
    from motte.steward import parse_release_policy

    key = ContentKey.generate()
    steward.secrets.put(
        "content-key/acme/db",
        key,
        policy=parse_release_policy('signed = ["acme/db"]\nallow_insecure_sim = true', source="p"),
        actor="test",
        purpose="content-key",
    )
    # A packager that names another plaintext than the one it encrypts.
    real = _package.Encryption

    def lying(secret, version, digest, size, *a, **k):  # type: ignore[no-untyped-def]
        return real(secret, version, "sha256:" + "ee" * 32, size, *a, **k)

    monkeypatch.setattr(_package, "Encryption", lying)
    result = build_package(
        SECRET_DB,
        parse_reference("acme/db:6.6"),
        content_key=ContentKey("content-key/acme/db", 1, key),
    )
    monkeypatch.setattr(_package, "Encryption", real)
    steward.secrets.set_policy(
        "content-key/acme/db",
        parse_release_policy(
            f'digests = ["{result.digest}"]\nallow_insecure_sim = true', source="p"
        ),
        actor="test",
    )
    steward.secrets.put(
        "db-password",
        b"pw",
        policy=parse_release_policy(
            f'digests = ["{result.digest}"]\nallow_insecure_sim = true', source="p"
        ),
        actor="test",
    )
    with steward_server(steward) as url, pytest.raises(DecryptionError) as e:
        launch(
            "acme/db:6.6",
            steward=url,
            backend="sim",
            allow_insecure_sim=True,
            grants=grants_from_flags(["listen:web", "secret:db-password"]),
        )
    assert "not the signed sha256:eeee" in e.value.message
    assert not dumpable()  # a process that held the content key dumps no core
    assert list((Path(os.environ["MOTTE_HOME"]) / "cache" / "compiled").glob("*")) == []


def test_a_package_gets_a_secret_only_if_the_host_grants_it_and_the_steward_releases_it(
    steward,
):
    from motte.manifest import GrantRefusedError
    from motte.steward import parse_release_policy

    result = build_package(SECRET_DB, parse_reference("acme/db:7.0"))
    steward.secrets.put(
        "db-password",
        b"hunter2-canary",
        policy=parse_release_policy(
            f'digests = ["{result.digest}"]\nallow_insecure_sim = true', source="p"
        ),
        actor="test",
    )
    run = {"backend": "sim", "allow_insecure_sim": True}
    with steward_server(steward) as url:
        # The Steward would release it; the host has not granted it: refused before the
        # Keep asks (the audit has no release row, granted or refused).
        with pytest.raises(GrantRefusedError) as e:
            launch("acme/db:7.0", steward=url, grants=grants_from_flags(["listen:web"]), **run)
        assert e.value.missing == (
            "secret db-password: from the Steward, to /run/secrets/db-password, $DB_PASSWORD: "
            "--grant secret:db-password",
        )
        assert [r.action for r in steward.secrets.audit()] == ["put"]
        assert "hunter2-canary" not in e.value.message + (e.value.hint or "")
        # Granted: the Keep asks, the Steward releases, the guest gets it.
        both = grants_from_flags(["listen:web", "secret:db-password"])
        launched = launch("acme/db:7.0", steward=url, grants=both, **run)
        try:
            assert "secret db-password to /run/secrets/db-password, $DB_PASSWORD" in (
                "; ".join(launched.granted.granted)
            )
            r = launched.workload.run(
                env={"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, stdout="capture"
            )
            assert b"password from /run/secrets/db-password (14 bytes)" in r.stdout
        finally:
            launched.workload.secrets.close()
        # Granted by the host, refused by the Steward: both must say yes.
        steward.secrets.set_policy("db-password", None, actor="test")
        from motte.steward import SecretRefusedError

        with pytest.raises(SecretRefusedError):
            launch("acme/db:7.0", steward=url, grants=both, **run)
    assert [(r.action, r.decision) for r in steward.secrets.audit()][1:] == [
        ("release", "released"),
        ("policy", "done"),
        ("release", "refused"),
    ]


def test_a_worker_process_decrypts_the_module_again_from_the_store(steward):
    """What a serving Keep's worker process does with its parent's hand-over: the content
    key and the ciphertext's digest, the module decrypted from the local store while read."""
    from motte.keep._secrets import prepare_in_worker
    from motte.steward import parse_release_policy

    key = ContentKey.generate()
    result = build_package(
        SECRET_DB,
        parse_reference("acme/db:8.0"),
        content_key=ContentKey("content-key/acme/db", 1, key),
    )
    allowed = f'digests = ["{result.digest}"]\nallow_insecure_sim = true'
    for name, value in (("content-key/acme/db", key), ("db-password", b"hunter2")):
        steward.secrets.put(
            name, value, policy=parse_release_policy(allowed, source="p"), actor="test"
        )
    grants = grants_from_flags(["listen:web", "secret:db-password"])
    with steward_server(steward) as url:
        launched = launch(
            "acme/db:8.0", steward=url, backend="sim", allow_insecure_sim=True, grants=grants
        )
    parent = launched.workload
    doc = parent.confidential.handover()
    try:
        worker = prepare_in_worker(parent.manifest, doc)
        assert worker.digest == parent.digest == launched.manifest.workload.digest
        assert worker.cache_status == "hit"  # the parent's sealed entry, opened here too
        r = worker.run(env={"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, stdout="capture")
        assert b"password from /run/secrets/db-password (7 bytes)" in r.stdout
        # A ciphertext changed in the store is refused, not run.
        from motte.keep._workload import blob_path

        blob = blob_path(doc["encrypted"]["blob"])
        data = bytearray(blob.read_bytes())
        data[-5] ^= 1
        blob.chmod(0o600)
        blob.write_bytes(data)
        with pytest.raises(DecryptionError, match="does not decrypt under its content key"):
            prepare_in_worker(parent.manifest, doc)
    finally:
        parent.secrets.close()
