"""Sealed volumes in a Keep (motte.keep._volumes) against a real Steward in this process.

Every refusal of issue 16 that a Keep meets when it opens a volume: a snapshot with one
byte flipped, a truncated one, one swapped from another volume, a rolled-back one, and
another workload's: each refused with one line, the host's snapshot left byte for byte as
it was, and nothing left in memory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from motte.errors import MotteError, UsageError
from motte.keep._volumes import (
    FLUSH_FILE,
    VOLUME_PREFIX,
    VolumeError,
    VolumeNotPersisted,
    open_volumes,
    resolve_volumes,
)
from motte.keep.backends import SimBackend
from motte.manifest import parse_manifest
from tests.steward.helpers import DIGEST, OTHER_DIGEST, Clock, make_steward
from tests.steward.servers import steward_server

SIM = SimBackend(allow_insecure_sim=True)
CANARY = b"motte-volume-canary:" + os.urandom(8).hex().encode()


def manifest(tmp_path: Path, *volumes: tuple[str, str]) -> object:
    text = 'workload = "m.wasm"\n' + "".join(
        f'[[volume]]\nname = "{n}"\nguest = "/{n}"\nsealed_to = "{s}"\nsnapshot_interval = 0\n'
        for n, s in volumes
    )
    return parse_manifest(text, base_dir=tmp_path, name="Motte.toml")


@pytest.fixture
def world(tmp_path, motte_home):
    steward = make_steward(tmp_path / "steward", clock=Clock())
    (steward.paths.root / "volumes.toml").write_text("allow_insecure_sim = true\n")
    with steward_server(steward) as url:
        yield url, tmp_path
    steward.close()


def open_(url, m, host: Path, digest=DIGEST, name="data"):
    """Open ``m``'s volume ``name`` with its snapshots in ``host`` (as the host granted)."""
    m = m.replace(volume=tuple(v.replace(host=host) for v in m.volume if v.name == name))
    return open_volumes(url, digest, SIM, m, repository=None)


def mine() -> list[Path]:
    return [p for p in Path("/dev/shm").glob(f"{VOLUME_PREFIX}{os.getpid()}-*")]


def write_and_close(url, m, host, files: dict[str, bytes], digest=DIGEST):
    vols = open_(url, m, host, digest)
    (vol,) = vols.volumes
    for name, data in files.items():
        (vol.mem_dir / name).write_bytes(data)
    report = vols.close("stop")
    assert report is not None and report.ok, report
    return report


def read_back(url, m, host, digest=DIGEST) -> dict[str, bytes]:
    vols = open_(url, m, host, digest)
    try:
        (vol,) = vols.volumes
        return {p.name: p.read_bytes() for p in vol.mem_dir.iterdir()}
    finally:
        vols.discard()


def test_a_volume_survives_a_restart_and_the_host_sees_only_ciphertext(world):
    url, tmp = world
    m = manifest(tmp, ("data", "digest"))
    host = tmp / "host"
    r1 = write_and_close(url, m, host, {"count": b"1\n", "note": CANARY})
    r2 = write_and_close(url, m, host, {"count": b"2\n"})
    assert [p.version for p in r1.persisted + r2.persisted] == [1, 2]
    assert read_back(url, m, host) == {"count": b"2\n", "note": CANARY}
    for path in host.rglob("*"):
        assert CANARY not in path.read_bytes()
    assert mine() == []  # zeroed and removed at close


def test_an_unchanged_volume_is_not_snapshotted_again(world):
    url, tmp = world
    m = manifest(tmp, ("data", "digest"))
    host = tmp / "host"
    write_and_close(url, m, host, {"count": b"1\n"})
    vols = open_(url, m, host)
    report = vols.close("drain")
    assert report.persisted == () and report.unchanged == (f"{DIGEST}:data",)


def test_a_flush_request_is_persisted_and_acknowledged_by_removing_the_file(world):
    url, tmp = world
    m = manifest(tmp, ("data", "digest"))
    vols = open_(url, m, tmp / "host")
    try:
        (vol,) = vols.volumes
        (vol.mem_dir / "count").write_bytes(b"7\n")
        (vol.mem_dir / FLUSH_FILE).write_bytes(b"")
        vols.after_instance()
        assert not (vol.mem_dir / FLUSH_FILE).exists()
        assert vol.version == 1
        # A flush that cannot be persisted is no acknowledgement: the file stays.
        vol.spec = vol.spec.replace(size=0)  # nothing fits in 0 MiB
        (vol.mem_dir / "count").write_bytes(b"8\n")
        (vol.mem_dir / FLUSH_FILE).write_bytes(b"")
        with pytest.raises(VolumeNotPersisted, match="more than its size limit"):
            vols.after_instance()
        assert (vol.mem_dir / FLUSH_FILE).exists() and vol.version == 1
    finally:
        vols.discard()


def refusal(url, m, host, digest=DIGEST) -> str:
    before = {p: p.read_bytes() for p in host.rglob("*") if p.is_file()}
    with pytest.raises(MotteError) as info:
        open_(url, m, host, digest)
    after = {p: p.read_bytes() for p in host.rglob("*") if p.is_file()}
    assert after == before, "nothing on the host was changed"
    assert mine() == [], "nothing left in memory"
    assert "\n" not in info.value.message
    return info.value.message


def test_a_snapshot_with_one_byte_flipped_is_refused(world):
    url, tmp = world
    m = manifest(tmp, ("data", "digest"))
    host = tmp / "host"
    write_and_close(url, m, host, {"count": b"1\n", "note": CANARY})
    snap = host / "volume.sealed"
    data = bytearray(snap.read_bytes())
    data[-20] ^= 0x80
    snap.write_bytes(data)
    assert "chunk 0 does not open under this volume's key" in refusal(url, m, host)


def test_a_truncated_snapshot_is_refused(world):
    url, tmp = world
    m = manifest(tmp, ("data", "digest"))
    host = tmp / "host"
    write_and_close(url, m, host, {"count": b"1\n"})
    snap = host / "volume.sealed"
    snap.write_bytes(snap.read_bytes()[:-7])
    assert "does not open" in refusal(url, m, host)


def test_a_snapshot_swapped_from_another_volume_is_refused(world):
    url, tmp = world
    m = manifest(tmp, ("data", "digest"))
    logs = manifest(tmp, ("logs", "digest"))
    write_and_close(url, m, tmp / "data", {"count": b"1\n"})
    vols = open_(url, logs, tmp / "logs", name="logs")
    (vols.volumes[0].mem_dir / "log").write_bytes(b"other")
    vols.close()
    shutil.copy(tmp / "logs" / "volume.sealed", tmp / "data" / "volume.sealed")
    message = refusal(url, m, tmp / "data")
    assert f"a snapshot of volume {DIGEST}:logs, not of {DIGEST}:data" in message


def test_a_rolled_back_snapshot_is_refused_naming_both_versions(world):
    url, tmp = world
    m = manifest(tmp, ("data", "digest"))
    host = tmp / "host"
    write_and_close(url, m, host, {"count": b"1\n"})
    old = (host / "volume.sealed").read_bytes()
    write_and_close(url, m, host, {"count": b"2\n"})
    (host / "volume.sealed").write_bytes(old)
    message = refusal(url, m, host)
    assert "snapshot version 1 is older than version 2" in message
    assert "rolled-back" in message


def test_another_workload_cannot_open_the_volume(world):
    url, tmp = world
    m = manifest(tmp, ("data", "digest"))
    host = tmp / "host"
    write_and_close(url, m, host, {"count": b"1\n"})
    message = refusal(url, m, host, digest=OTHER_DIGEST)
    assert f"a snapshot of volume {DIGEST}:data, not of {OTHER_DIGEST}:data" in message
    # The rightful workload still opens it.
    assert read_back(url, m, host) == {"count": b"1\n"}


def test_grants_a_package_needs_and_grants_nobody_asked_for(tmp_path, motte_home):
    from motte.manifest import GrantError, GrantRefusedError, apply_grants, grants_from_flags

    m = manifest(tmp_path, ("data", "namespace"))
    with pytest.raises(GrantRefusedError, match=r"--grant volume:data \(snapshots under"):
        apply_grants(m, package="acme/counter:1.0")
    with pytest.raises(GrantError, match="asks for no volume:logs"):
        apply_grants(m, package="acme/counter:1.0", flags=grants_from_flags(["volume:logs"]))
    with pytest.raises(UsageError, match="volume name 'Data'"):
        grants_from_flags(["volume:Data"])
    granted = apply_grants(m, package="acme/counter:1.0", flags=grants_from_flags(["volume:data"]))
    ((_, identity, host),) = resolve_volumes(granted.manifest, DIGEST, repository="acme/counter")
    assert str(identity) == "acme/counter:data"
    assert host == motte_home / "volumes" / "acme" / "counter" / "data"
    elsewhere = apply_grants(
        m, package="acme/counter:1.0", flags=grants_from_flags([f"volume:data={tmp_path}/v"])
    )
    assert elsewhere.manifest.volume[0].host == tmp_path / "v"
    # This host's own manifest: granted as written, in the default place.
    assert apply_grants(m, package=None).manifest.volume[0].host is None
    with pytest.raises(VolumeError, match="not a package run by reference"):
        resolve_volumes(m, DIGEST, repository=None)


def test_the_host_policy_grants_volumes(tmp_path, motte_home):
    from motte.manifest import GrantError, apply_grants, load_host_policy

    m = manifest(tmp_path, ("data", "namespace"), ("logs", "digest"))
    policy = tmp_path / "host-policy.toml"
    policy.write_text(
        'volume = ["logs"]\n[package."acme/counter".volume.data]\nhost = "/srv/motte/data"\n'
    )
    grants = load_host_policy(policy)
    granted = apply_grants(m, package="acme/counter:1.0", policy=grants.for_package("acme/counter"))
    hosts = {v.name: v.host for v in granted.manifest.volume}
    assert hosts == {"data": Path("/srv/motte/data"), "logs": None}
    policy.write_text('volume = ["Bad"]\n')
    with pytest.raises(GrantError, match="volume name 'Bad'"):
        load_host_policy(policy)


def wait_until(predicate, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_run_once_guests_flush_request_and_the_interval_are_carried_out(world):
    """No instance gate (a run-once guest): the background thread answers the flush file
    (removing it once committed) and persists a changed volume at its interval."""
    url, tmp = world
    text = (
        'workload = "m.wasm"\n[[volume]]\nname = "data"\nguest = "/data"\n'
        'sealed_to = "digest"\nsnapshot_interval = 1\n'
    )
    m = parse_manifest(text, base_dir=tmp, name="Motte.toml")
    vols = open_(url, m, tmp / "host")
    vols.start()
    try:
        (vol,) = vols.volumes
        (vol.mem_dir / "count").write_bytes(b"1\n")
        (vol.mem_dir / FLUSH_FILE).write_bytes(b"")
        wait_until(lambda: not (vol.mem_dir / FLUSH_FILE).exists())
        assert vol.version == 1
        (vol.mem_dir / "count").write_bytes(b"22\n")  # no flush asked: the interval's
        wait_until(lambda: vol.version == 2)
    finally:
        vols.close()
    assert read_back(url, m, tmp / "host") == {"count": b"22\n"}
