"""The compiled-artifact cache: compile once, deserialize later, and never trust an entry
that is corrupt, truncated, foreign, of another format or made by another engine."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from motte.keep import CacheKeyError, PreparedWorkload
from motte.keep._cache import MAGIC, TAG_BYTES, CompiledCache, _tag, cache_key, key_path
from motte.keep._engine import EngineSettings, engine_fingerprint, runtime
from motte.manifest import manifest_for_module
from tests.keep import guests
from tests.keep.conftest import EXAMPLES

HELLO = EXAMPLES / "hello" / "hello.wasm"


def prepare(path=HELLO):
    return PreparedWorkload.prepare(manifest_for_module(path))


def entry_path(workload):
    name = cache_key(workload.digest, workload.kind, runtime().fingerprint)
    return CompiledCache().path(name), name


def run_ok(workload):
    r = workload.run(stdout="capture")
    assert (r.exit_code, r.trap) == (0, None)
    assert r.stdout.startswith(b"Hello, world!")


def test_first_run_compiles_later_runs_deserialize():
    first = prepare()
    assert first.cache_status == "compiled"
    second = prepare()
    assert second.cache_status == "hit"
    run_ok(second)
    path, _ = entry_path(second)
    assert path.read_bytes().startswith(MAGIC)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_is_created_private_and_directories_owner_only(motte_home):
    prepare()
    assert stat.S_IMODE(key_path().stat().st_mode) == 0o600
    assert len(key_path().read_bytes()) == 32
    assert stat.S_IMODE((motte_home / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((motte_home / "cache" / "compiled").stat().st_mode) == 0o700


def _damage_and_rerun(mutate, expected_status):
    path, name = entry_path(prepare())
    data = path.read_bytes()
    path.write_bytes(mutate(data, name))
    again = prepare()
    assert again.cache_status == expected_status
    run_ok(again)
    # The entry was replaced by a good one.
    assert prepare().cache_status == "hit"


def test_corrupt_entry_is_recompiled():
    def flip(data, name):
        i = len(MAGIC) + TAG_BYTES + len(data) // 2
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]

    _damage_and_rerun(flip, "recompiled (bad tag)")


def test_truncated_entry_is_recompiled():
    _damage_and_rerun(lambda data, name: data[: len(data) // 2], "recompiled (bad tag)")
    _damage_and_rerun(lambda data, name: data[:20], "recompiled (truncated)")


def test_entry_under_a_foreign_key_is_recompiled():
    def sign_with_other_key(data, name):
        artifact = data[len(MAGIC) + TAG_BYTES :]
        return MAGIC + _tag(os.urandom(32), name, artifact) + artifact

    _damage_and_rerun(sign_with_other_key, "recompiled (bad tag)")


def test_entry_of_another_format_version_is_recompiled():
    _damage_and_rerun(
        lambda data, name: b"motte-cwasm-v0\n" + data[len(MAGIC) :], "recompiled (wrong format)"
    )


def test_entry_moved_from_another_module_is_refused(guest):
    """A valid entry for module A copied under module B's name must not run as B."""
    other = prepare(guest("exit7", guests.exit_with(7)))
    other_path, _ = entry_path(other)
    hello_path, _ = entry_path(prepare())
    hello_path.write_bytes(other_path.read_bytes())
    again = prepare()
    assert again.cache_status == "recompiled (bad tag)"
    run_ok(again)


def test_authentic_entry_from_another_engine_configuration_is_recompiled():
    """Correctly tagged, but compiled by a different engine (another wasmtime build or
    configuration would look the same): wasmtime refuses it, and it is recompiled."""
    fuel = EngineSettings(epoch_interruption=False)
    import wasmtime

    cfg = fuel.config()
    cfg.consume_fuel = True
    foreign = wasmtime.Module(wasmtime.Engine(cfg), HELLO.read_bytes()).serialize()
    path, name = entry_path(prepare())
    cache = CompiledCache()
    path.write_bytes(MAGIC + _tag(cache.key, name, bytes(foreign)) + bytes(foreign))
    again = prepare()
    assert again.cache_status.startswith("recompiled (incompatible: ")
    run_ok(again)
    assert prepare().cache_status == "hit"


def test_cache_key_covers_digest_kind_and_engine():
    fp = engine_fingerprint()
    base = cache_key("sha256:" + "0" * 64, "module", fp)
    assert base != cache_key("sha256:" + "1" * 64, "module", fp)
    assert base != cache_key("sha256:" + "0" * 64, "component", fp)
    assert base != cache_key("sha256:" + "0" * 64, "module", fp + "x")
    assert engine_fingerprint() != engine_fingerprint(EngineSettings(max_wasm_stack=1 << 20))
    assert "wasmtime 50." in fp


def test_key_readable_by_others_is_refused():
    prepare()
    key_path().chmod(0o644)
    with pytest.raises(CacheKeyError, match=r"accessible to others \(mode 0644\)") as e:
        prepare()
    assert "chmod 600" in e.value.hint
    assert e.value.exit_status == 125


def test_key_of_the_wrong_size_or_a_symlink_is_refused(tmp_path):
    prepare()
    key_path().write_bytes(b"short")
    with pytest.raises(CacheKeyError, match="has 5 bytes, expected 32"):
        prepare()
    key_path().unlink()
    target = tmp_path / "elsewhere.key"
    target.write_bytes(os.urandom(32))
    target.chmod(0o600)
    key_path().symlink_to(target)
    with pytest.raises(CacheKeyError, match="cannot open the cache key"):
        prepare()


def test_concurrent_first_use_agrees_on_one_key(motte_home):
    code = (
        "from motte.keep._cache import load_or_create_key; "
        "import sys; sys.stdout.write(load_or_create_key().hex())"
    )
    env = {**os.environ, "MOTTE_HOME": str(motte_home)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
        for _ in range(4)
    ]
    keys = {p.communicate()[0] for p in procs}
    assert len(keys) == 1
    assert key_path().read_bytes().hex() == keys.pop().decode()
    assert [p.name for p in key_path().parent.iterdir()] == ["compiled-cache.key"]


def test_unwritable_cache_still_runs(motte_home):
    (motte_home / "cache").mkdir()
    (motte_home / "cache" / "compiled").write_text("not a directory")
    w = prepare()
    assert w.cache_status.endswith(", cache not writable")
    run_ok(w)


def test_cli_cache_info_and_clear(motte, motte_home):
    prepare()
    r = motte("cache", "info", "--json")
    assert r.exit_code == 0
    import json

    info = json.loads(r.stdout)
    assert info["entries"] == 1 and info["bytes"] > 0 and info["key_present"]
    r = motte("cache", "clear")
    assert r.exit_code == 0
    assert r.stdout.startswith("removed 1 compiled artifact(s)")
    assert json.loads(motte("cache", "info", "--json").stdout)["entries"] == 0
    assert prepare().cache_status == "compiled"
