"""Shutdown plans: structure (load_plan), the whole (check_plan), order and timeline."""

import pytest

from motte.power import PlanError, check_plan, load_plan, shutdown_stages
from tests.power.plans import BASE, plan, write_plan


def test_the_base_plan_loads_and_checks(tmp_path):
    p = plan(tmp_path)
    assert p.name == "lab"
    assert str(p.upses[0].address) == "rack@127.0.0.1:3493"
    assert p.hosts["nas"].needs == 60
    result = check_plan(p)
    assert result.ok, result.errors
    assert result.stages == (("app",), ("nas",))
    assert result.kept_up == ("switch",)
    assert result.coordinator == "pi"
    # app 30 + nas (20 + 40) + secondaries 4 + pi 5
    assert result.shutdown_time == 99


def test_independent_hosts_share_a_stage_and_dependents_go_first(tmp_path):
    p = plan(
        tmp_path,
        BASE
        + """
[hosts.db]
depends_on = ["nas"]
stop = "true"
[hosts.web]
depends_on = ["db", "switch"]
stop = "true"
[hosts.printer]
stop = "true"
""",
    )
    assert shutdown_stages(p) == [["app", "printer", "web"], ["db"], ["nas"]]


def test_timeline_lists_every_step_from_the_cut(tmp_path):
    result = check_plan(
        plan(
            tmp_path, BASE.replace("secondaries_wait = 4", "secondaries_wait = 4\ncut_power = true")
        )
    )
    steps = [(e.start, e.end, e.what, e.host) for e in result.timeline]
    assert steps[0][:2] == (0, 0)
    assert steps[1][:2] == (10, 10)  # the plan starts after the ride-through
    assert (10, 40, "stage 1: stop", "app") in steps
    assert (40, 60, "stage 2: drain", "nas") in steps
    assert (60, 100, "stage 2: stop", "nas") in steps
    assert (100, 104, "wait for secondaries", None) in steps
    assert (104, 104, "ask the UPS for shutdown.return", None) in steps
    assert steps[-1] == (104, 109, "stop the coordinator", "pi")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('depends_on = ["nas", "switch"]', 'depends_on = ["nsa"]', "unknown host 'nsa'"),
        (
            '[hosts.nas]\ndepends_on = ["switch"]',
            '[hosts.nas]\ndepends_on = ["app"]',
            "dependency cycle app -> nas -> app",
        ),
        ("coordinator = true", "", "exactly one host must be the coordinator, found 0"),
        ("[hosts.app]\n", "[hosts.app]\ncoordinator = true\n", "found 2: pi, app"),
        (
            'coordinator = true\ndepends_on = ["switch"]',
            'coordinator = true\ndepends_on = ["nas"]',
            "the coordinator stops last but needs nas",
        ),
        (
            "runtime_below = 300",
            "runtime_below = 60",
            "the shutdown takes 99s but starts with only 60s",
        ),
    ],
)
def test_whole_plan_errors_name_the_file_and_key(tmp_path, old, new, message):
    p = plan(tmp_path, **{old: new})
    result = check_plan(p)
    assert not result.ok
    assert any(message in e for e in result.errors), result.errors
    assert all(str(p.source) in e for e in result.errors)


def test_cut_power_without_a_login_is_an_error(tmp_path):
    text = BASE.replace('username = "motte"\npassword_env = "MOTTE_TEST_NUT_PASSWORD"\n', "")
    text = text.replace("secondaries_wait = 4", "cut_power = true")
    result = check_plan(plan(tmp_path, text))
    assert any("policy.cut_power: needs a NUT login" in e for e in result.errors)
    assert any("FSD cannot be set" in w for w in result.warnings)


def test_a_shutdown_longer_than_the_battery_lasts_is_refused(tmp_path):
    p = plan(tmp_path)
    assert check_plan(p, runtime=500).ok
    result = check_plan(p, runtime=100)
    assert not result.ok
    assert "the battery lasts 100s" in result.errors[0]
    assert "take 109s" in result.errors[0]  # 10 s ride-through + 99 s shutdown


def test_warnings_for_hosts_that_cannot_come_back_and_switches_that_need_stopped_hosts(tmp_path):
    extra = '[hosts.router]\nnever_stop = true\ndepends_on = ["nas"]\n[hosts.tv]\nstop = "true"\n'
    result = check_plan(plan(tmp_path, BASE + extra))
    assert result.ok
    assert any("router: kept up, but depends on nas" in w for w in result.warnings)
    assert any("tv: no start or ready command" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[hosts.nas]\n", '[hosts.nas]\ndepend_on = ["x"]\n', "hosts.nas.depend_on: unknown key"),
        (
            'password_env = "MOTTE_TEST_NUT_PASSWORD"',
            'password = "secret"',
            "ups.password: a password may not be written in the plan",
        ),
        ('password_env = "MOTTE_TEST_NUT_PASSWORD"', "", "ups.username: needs password_file"),
        ("ride_through = 10", 'ride_through = "10"', "policy.ride_through: must be a number"),
        ("restart_charge = 50", "restart_charge = 150", "must be between 0 and 100"),
        ('address = "rack@127.0.0.1:3493"', 'address = "rack@host:99999"', "not a TCP port"),
        ('stop = "true"\nstop_time = 30', "stop_time = 30", "hosts.app.stop: is required"),
        (
            "[hosts.switch]\nnever_stop = true",
            '[hosts.switch]\nnever_stop = true\nstop = "x"',
            "a never_stop host is never drained",
        ),
        (
            "[hosts.nas]\n",
            '[hosts.nas]\nagent = { url = "http://nas:3494", secret_file = "s" }\n',
            "the agent runs its own drain and stop",
        ),
        (
            "[hosts.nas]\n",
            '[hosts.nas]\nssh = "nas"\nagent = { url = "http://n", secret_file = "s" }\n',
            "give ssh or agent, not both",
        ),
        ('stop = "true"\nstop_time = 30', 'stop = "unclosed \'quote"', "cannot split command"),
        ("[policy]", '[notify]\nevents = ["ONFIRE"]\n[policy]', "unknown event 'ONFIRE'"),
        ('name = "lab"', 'name = "my lab!"', "must be letters, digits"),
    ],
)
def test_structural_errors(tmp_path, old, new, message):
    with pytest.raises(PlanError, match=message.replace("(", r"\(")) as info:
        plan(tmp_path, **{old: new})
    assert str(tmp_path) in str(info.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(PlanError, match=r"nope\.toml: no such shutdown plan"):
        load_plan(tmp_path / "nope.toml")
    with pytest.raises(PlanError, match=r"plan\.toml:1: invalid TOML"):
        load_plan(write_plan(tmp_path, "[ups\n"))


def test_relative_commands_and_files_are_taken_from_the_plans_folder(tmp_path):
    p = plan(
        tmp_path,
        **{
            'stop = "true"\nstop_time = 5': 'stop = "bin/halt.sh now"\nstop_time = 5',
            'password_env = "MOTTE_TEST_NUT_PASSWORD"': 'password_file = "pw"',
        },
    )
    assert p.hosts["pi"].stop == (str(tmp_path / "bin/halt.sh"), "now")
    assert p.upses[0].password_file == tmp_path / "pw"
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "pw").chmod(0o644)
    with pytest.raises(PlanError, match="can be read by other users") as info:
        p.upses[0].password()
    assert info.value.hint == f"chmod 600 {tmp_path / 'pw'}"
    (tmp_path / "pw").chmod(0o600)
    assert p.upses[0].password() == "s3cret"


def test_password_from_the_environment(tmp_path, monkeypatch):
    p = plan(tmp_path)
    with pytest.raises(PlanError, match="MOTTE_TEST_NUT_PASSWORD is not set"):
        p.upses[0].password()
    monkeypatch.setenv("MOTTE_TEST_NUT_PASSWORD", "pw")
    assert p.upses[0].password() == "pw"


# -- issue 20, faults 3 and 4 -----------------------------------------------------------------


def test_a_dot_slash_command_is_taken_from_the_plans_folder_given_relatively(tmp_path, monkeypatch):
    """``"./stop.sh"`` in ``plan.toml`` (no folder part) was looked up on PATH."""
    import asyncio

    from motte.power._runner import run_command

    script = tmp_path / "stop.sh"
    script.write_text("#!/bin/sh\necho stopped\n")
    script.chmod(0o755)
    write_plan(tmp_path, BASE.replace('stop = "true"\nstop_time = 30', 'stop = "./stop.sh"'))
    monkeypatch.chdir(tmp_path)
    p = load_plan("plan.toml")
    argv = p.hosts["app"].stop
    assert argv == (str(tmp_path / "stop.sh"),)
    monkeypatch.chdir("/")  # the watch may run anywhere
    result = asyncio.run(run_command(argv, timeout=30))
    assert result.ok and result.output == "stopped"


def test_check_local_names_every_command_that_cannot_run_here(tmp_path, monkeypatch):
    from motte.power import check_local

    (tmp_path / "not-exec.sh").write_text("#!/bin/sh\n")
    text = (
        BASE.replace('stop = "true"\nstop_time = 30', 'stop = "./missing.sh"\nstop_time = 30')
        .replace('start = "true"\n[hosts.app]', 'start = "./not-exec.sh"\n[hosts.app]')
        .replace('ready = "true"', 'ready = "no-such-program-anywhere"')
    )
    monkeypatch.setenv("MOTTE_TEST_NUT_PASSWORD", "pw")
    problems = check_local(plan(tmp_path, text))
    assert [p.split(": ", 2)[1] for p in problems] == [
        "hosts.nas.start",
        "hosts.app.ready",
        "hosts.app.stop",
    ]
    assert problems[0].endswith("not-exec.sh: not executable (chmod +x?)")
    assert problems[1].endswith("no-such-program-anywhere: not found on PATH")
    assert problems[2].endswith("missing.sh: no such file")


def test_check_local_refuses_a_password_file_others_can_read_as_watch_would(tmp_path):
    from motte.power import check_local

    pw = tmp_path / "nut.pw"
    pw.write_text("secret\n")
    pw.chmod(0o644)
    text = BASE.replace('password_env = "MOTTE_TEST_NUT_PASSWORD"', 'password_file = "nut.pw"')
    problems = check_local(plan(tmp_path, text))
    assert len(problems) == 1
    assert "ups.password_file:" in problems[0] and "can be read by other users" in problems[0]
    assert "secret" not in problems[0]
    pw.chmod(0o600)
    assert check_local(plan(tmp_path, text)) == ()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_number_that_is_not_finite_is_refused(tmp_path, value):
    with pytest.raises(PlanError, match=r"policy\.ride_through: must be a finite number, not"):
        plan(tmp_path, BASE.replace("ride_through = 10", f"ride_through = {value}"))


def test_every_structural_problem_is_listed_not_only_the_first(tmp_path):
    text = (
        BASE.replace("ride_through = 10", 'ride_through = "long"')
        .replace("mains_stable = 5", "mains_stable = 5\nmains_stabel = 5")
        .replace('stop = "true"\nstop_time = 30', "stop_time = 30\ndepend_on = []")
    )
    with pytest.raises(PlanError) as caught:
        plan(tmp_path, text)
    keys = [p.split(": ")[1] for p in caught.value.problems]
    assert keys == [
        "policy.ride_through",
        "policy.mains_stabel",
        "hosts.app.stop",
        "hosts.app.depend_on",
    ]
    assert caught.value.message.endswith("(and 3 more problems)")
