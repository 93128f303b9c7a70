"""Policy files: every key read strictly, errors naming key and line, and the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from motte.attest import Policy, PolicyError, default_policy, load_policy, parse_policy

M48 = "ab" * 48
FULL = f"""
name = "production"
allowed_kinds = ["snp", "tdx"]
allow_debug = false
report_data = "0x{"11" * 32}"

[snp]
measurements = ["{M48}", "{"cd" * 48}"]
host_data = "{"00" * 32}"
id_key_digests = ["{M48}"]
min_tcb = {{ bootloader = 3, tee = 0, snp = 8, microcode = 115 }}
min_guest_svn = 1
vmpl = 0
allow_migrate_ma = false
allow_smt = true
require_crl = true

[tdx]
mr_td = ["{M48}"]
rtmr0 = "{M48}"
accepted_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
allowed_advisories = ["INTEL-SA-00615"]

[sgx]
mr_enclave = ["{"ef" * 32}"]
mr_signer = ["{"01" * 32}"]
isv_prod_id = 1
min_isv_svn = 2

[sim]
keys = ["{"02" * 32}"]
"""


def test_full_policy() -> None:
    p = parse_policy(FULL, source="prod.toml")
    assert p.name == "production"
    assert p.allowed_kinds == ("snp", "tdx")
    assert p.report_data == bytes([0x11]) * 32
    assert p.snp.measurements == (bytes([0xAB]) * 48, bytes([0xCD]) * 48)
    assert p.snp.min_tcb == {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}
    assert p.snp.require_crl and p.snp.vmpl == 0
    assert p.tdx.accepted_tcb_statuses == ("UpToDate", "SWHardeningNeeded")
    assert p.tdx.allowed_advisories == ("INTEL-SA-00615",)
    assert p.sgx.isv_prod_id == 1 and p.sgx.min_isv_svn == 2
    assert p.sim.keys == (bytes([2]) * 32,)
    assert not p.allow_insecure_sim
    assert p.ref()["source"] == "prod.toml" and len(p.ref()["sha256"]) == 64


def test_default_policy_denies_by_default() -> None:
    p = default_policy()
    assert p.allowed_kinds == ("snp", "tdx", "sgx")
    assert not p.allow_debug and not p.allow_insecure_sim
    assert not p.kind_allowed("sim")
    assert p.tdx.accepted_tcb_statuses == ("UpToDate",)
    assert p.sgx.accepted_tcb_statuses == ("UpToDate",)
    assert not p.snp.allow_migrate_ma
    assert p.report_data is None


def test_allow_insecure_sim_is_the_only_way_to_sim() -> None:
    assert parse_policy("allow_insecure_sim = true").kind_allowed("sim")
    with pytest.raises(PolicyError, match="'sim' is not one of snp, tdx, sgx"):
        parse_policy('allowed_kinds = ["sim"]')


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ('name = "x"\nallow_bugs = true\n', ":2: allow_bugs", "unknown key"),
        ("[snp]\nmeasurment = []\n", ":2: snp.measurment", "unknown key"),
        ('\n\n[snp]\nmeasurements = "ab"\n', ":4: snp.measurements", "must be a list"),
        (f'[snp]\nmeasurements = ["{"ab" * 47}"]\n', ":2: snp.measurements", "47 bytes"),
        ('[snp]\nhost_data = "xyz"\n', ":2: snp.host_data", "is not hex"),
        ('allow_debug = "yes"\n', ":1: allow_debug", "must be true or false"),
        ("[snp]\nvmpl = 4\n", ":2: snp.vmpl", "outside 0..3"),
        ("[snp]\nvmpl = true\n", ":2: snp.vmpl", "must be an integer"),
        ("[snp]\nmin_tcb = { boot = 1 }\n", ":2: snp.min_tcb.boot", "unknown TCB component"),
        (
            '[tdx]\naccepted_tcb_statuses = ["Fine"]\n',
            ":2: tdx.accepted_tcb_statuses",
            "'Fine'",
        ),
        ("snp = 3\n", ":1: snp", "must be a table"),
        ('report_data = "' + "00" * 65 + '"\n', ":1: report_data", "65 bytes"),
        ("[snp.min_tcb]\nbootloader = 300\n", ":2: snp.min_tcb.bootloader", "outside 0..255"),
    ],
)
def test_errors_name_key_and_line(text: str, where: str, reason: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy(text, source="p.toml")
    assert f"p.toml{where}" in e.value.message
    assert reason in e.value.message


def test_unknown_key_hint_lists_the_known_ones() -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy("[sgx]\nmrenclave = []\n")
    assert e.value.hint is not None and "mr_enclave" in e.value.hint


def test_toml_syntax_error() -> None:
    with pytest.raises(PolicyError, match=r":1: invalid TOML"):
        parse_policy("name = \n", source="p.toml")


def test_load_policy_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"missing\.toml: no such policy"):
        load_policy(tmp_path / "missing.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'name = "\xe9"\n')
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(bad)
    good = tmp_path / "good.toml"
    good.write_text('name = "mine"\n')
    p = load_policy(good)
    assert p.name == "mine" and p.source == str(good)


def test_policy_value_checks() -> None:
    with pytest.raises(ValueError):
        Policy(allowed_kinds=("kvm",))
    assert default_policy().with_report_data(b"\x01").report_data == b"\x01"
