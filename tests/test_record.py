"""Frozen records (the manifest and result types): immutable, compared by value without
their ``where``, copied with replace()."""

from __future__ import annotations

from pathlib import Path

import pytest

from motte.manifest import Dir, Limits, Workload


def test_records_are_immutable():
    d = Dir(Path("/d"), "/d")
    with pytest.raises(AttributeError, match="immutable"):
        d.guest = "/e"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del d.guest  # type: ignore[misc]
    with pytest.raises(AttributeError):
        d.extra = 1  # type: ignore[attr-defined]


def test_equality_ignores_where_and_compares_types():
    assert Dir(Path("/d"), "/d", where="Motte.toml:3") == Dir(Path("/d"), "/d", where="--dir")
    assert Dir(Path("/d"), "/d") != Dir(Path("/d"), "/d", writable=True)
    assert hash(Dir(Path("/d"), "/d", where="a")) == hash(Dir(Path("/d"), "/d", where="b"))
    assert Limits() != (256, 60.0, 300.0)
    assert repr(Dir(Path("/d"), "/d", where="x")) == (
        "Dir(guest='/d', host=PosixPath('/d'), name='d', writable=False)"
    )


def test_replace_validates_again():
    w = Workload(path=Path("/a.wasm"))
    assert w.replace(where="here").where == "here"
    with pytest.raises(ValueError, match="a path or a digest, exactly one"):
        w.replace(digest="sha256:" + "0" * 64)
    assert Limits().replace(memory=8) == Limits(memory=8)
