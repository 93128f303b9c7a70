"""Fixtures for the trust tests: a small, real supply chain per test (see world.py)."""

from __future__ import annotations

import pytest

from tests.trust.world import World, make_world


@pytest.fixture
def world(tmp_path) -> World:
    return make_world(tmp_path)
