"""Choosing a backend: by name, or the first available TEE, and never sim by accident."""

from __future__ import annotations

import json

import pytest

from motte.errors import UsageError
from motte.keep.backends import (
    Availability,
    BackendError,
    SimBackend,
    choose_backend,
    get_backend,
    platform_report,
)


class Stub:
    """A backend whose availability the test decides (no evidence is asked of it)."""

    def __init__(self, name: str, ok: bool) -> None:
        self.name = name
        self.description = f"{name} stub"
        self.ok = ok

    def available(self) -> Availability:
        return Availability(self.ok, (f"{self.name} {'here' if self.ok else 'absent'}",))

    def evidence(self, report_data: bytes):  # pragma: no cover - never called here
        raise AssertionError("not asked")


def test_automatic_choice_takes_the_first_available_tee_in_order():
    pool = [Stub("snp", False), Stub("tdx", True), Stub("sgx", True), SimBackend()]
    assert choose_backend(candidates=pool).name == "tdx"


def test_automatic_choice_never_falls_back_to_sim():
    pool = [Stub("snp", False), Stub("tdx", False), Stub("sgx", False)]
    pool.append(SimBackend(allow_insecure_sim=True))
    with pytest.raises(BackendError, match="no TEE backend is available") as e:
        choose_backend(allow_insecure_sim=True, candidates=pool)
    assert "snp: snp absent" in e.value.message
    assert "--backend sim --allow-insecure-sim" in (e.value.hint or "")


def test_sim_by_name_needs_consent():
    with pytest.raises(UsageError, match="INSECURE and needs --allow-insecure-sim"):
        choose_backend("sim")
    assert choose_backend("sim", allow_insecure_sim=True).name == "sim"


def test_a_named_backend_that_is_unavailable_lists_its_checks():
    with pytest.raises(BackendError, match="backend snp is not available here: snp absent"):
        choose_backend("snp", candidates=[Stub("snp", False)])


def test_unknown_backend_name():
    with pytest.raises(UsageError, match="unknown backend"):
        get_backend("kvm")


def test_this_machine_has_no_tee_and_says_why():
    """The development machine is no confidential guest: every hardware backend says so."""
    report = {e["name"]: e for e in platform_report()}
    assert list(report) == ["snp", "tdx", "sgx", "sim"]
    for name in ("snp", "tdx", "sgx"):
        assert report[name]["checks"], name
    assert report["sim"]["available"] and report["sim"]["insecure"]
    assert not report["sim"]["automatic"]


def test_platform_info_cli(cli):
    r = cli("platform", "info")
    assert r.exit_code == 0
    assert "sim   available, INSECURE (development only)" in r.stdout
    assert "automatic choice:" in r.stdout
    r = cli("platform", "info", "--json")
    doc = json.loads(r.stdout)
    assert [b["name"] for b in doc["backends"]] == ["snp", "tdx", "sgx", "sim"]
    assert {"available", "checks", "description", "via", "insecure"} <= set(doc["backends"][0])
