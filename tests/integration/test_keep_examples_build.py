"""The committed example binaries are exactly what examples/build.py produces (zig cc from
PyPI's ziglang; the component step needs npm and is not repeated here)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import require
from tests.keep.conftest import EXAMPLES

pytestmark = pytest.mark.integration


def test_committed_modules_are_reproducible():
    require(
        importlib.util.find_spec("ziglang") is not None,
        "zig, to rebuild the examples (pip install ziglang)",
    )
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / "build.py"), "--check", "--no-component"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == "build.py: reproducible"
