"""Plans for the power tests, written as TOML text into a temporary folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

from motte.power import load_plan

BASE = """
name = "lab"
[ups]
address = "rack@127.0.0.1:3493"
username = "motte"
password_env = "MOTTE_TEST_NUT_PASSWORD"
[policy]
ride_through = 10
mains_stable = 5
runtime_below = 300
reserve = 10
restart_charge = 50
secondaries_wait = 4
[hosts.switch]
never_stop = true
[hosts.pi]
coordinator = true
depends_on = ["switch"]
stop = "true"
stop_time = 5
[hosts.nas]
depends_on = ["switch"]
drain = "true"
drain_time = 20
stop = "true"
stop_time = 40
start = "true"
[hosts.app]
depends_on = ["nas", "switch"]
stop = "true"
stop_time = 30
confirm = "true"
start = "true"
ready = "true"
"""


def write_plan(folder: Path, text: str = BASE, name: str = "plan.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def plan(folder: Path, text: str = BASE, **replace: str):
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return load_plan(write_plan(folder, text))
