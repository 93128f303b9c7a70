"""A worker process rebuilds exactly the manifest its parent serves (command-line overrides
included) from JSON, and nothing but manifest types."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from motte.keep.serve._handover import decode_record, encode_record
from motte.manifest import Dir, Limits, Listen, load_manifest
from tests.conftest import REPO


def _round_trip(value: object) -> object:
    return decode_record(json.loads(json.dumps(encode_record(value))))


@pytest.mark.parametrize("example", ["http-hello", "hello", "files", "sha256"])
def test_examples_round_trip(example: str) -> None:
    manifest = load_manifest(REPO / "examples" / example / "Motte.toml")
    rebuilt = _round_trip(manifest)
    assert rebuilt == manifest
    assert rebuilt.source == manifest.source  # not compared by ==, still carried


def test_every_field_round_trips(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "guest.wasm").write_bytes(b"\0asm\1\0\0\0")
    path = tmp_path / "Motte.toml"
    path.write_text(
        'workload = "guest.wasm"\nargs = ["a", "b c"]\nenv = { K = "v", E = "" }\n'
        'stderr = { file = "err.log" }\nsteward = "https://steward.example"\n'
        '[[dir]]\nhost = "data"\nguest = "/data"\nwritable = true\n'
        "[limits]\nmemory = 32\ncpu_time = 1.5\nwall_time = 9\n"
        '[[listen]]\nname = "web"\nport = 8443\nprotocol = "http"\n'
        '[[listen]]\nname = "raw"\nport = 9000\nprotocol = "tcp"\ntls = false\n'
    )
    manifest = load_manifest(path).with_overrides(
        env={"FROM_FLAG": "1"}, memory=64, dirs=(Dir(tmp_path, "/extra", where="--dir"),)
    )
    rebuilt = _round_trip(manifest)
    assert rebuilt == manifest
    assert rebuilt.env["FROM_FLAG"] == "1"
    assert rebuilt.limits == Limits(64, 1.5, 9.0)
    assert rebuilt.listen[1] == Listen("raw", 9000, "tcp", tls=False)
    assert rebuilt.listen[0].where == manifest.listen[0].where  # errors still name the line
    assert rebuilt.dir[1].where == "--dir"


def test_only_manifest_types_are_sent_or_built() -> None:
    with pytest.raises(TypeError, match="cannot send a"):
        encode_record(object())
    with pytest.raises(ValueError, match="unknown record type"):
        decode_record({"$record": "PreparedWorkload"})
    with pytest.raises(ValueError, match="unknown record type"):
        decode_record({"$record": "__import__"})
