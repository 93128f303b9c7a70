"""`motte power` from the command line, in-process: exit statuses, output, no tracebacks."""

import json
import os
import re
from pathlib import Path

import pytest

from motte.errors import ExitStatus
from motte.power import Coordinator, UpsReading
from tests.power.plans import BASE, write_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "power"


def test_help_teaches_with_examples(cli):
    r = cli("power", "--help")
    assert r.exit_code == 0
    for word in (
        "simulate",
        "watch",
        "status",
        "plan",
        "agent",
        "secondary",
        "examples/power/rehearsal.toml",
    ):
        assert word in r.stdout
    for sub in (
        ("simulate",),
        ("watch",),
        ("status",),
        ("plan", "check"),
        ("secondary",),
        ("agent", "serve"),
        ("agent", "secret"),
    ):
        r = cli("power", *sub, "--help")
        assert r.exit_code == 0, (sub, r.stderr)


def test_plan_check_shows_order_and_timeline(cli):
    r = cli("power", "plan", "check", EXAMPLES / "homelab.toml", "--elsewhere")
    assert r.exit_code == 0, r.stderr
    assert "Plan homelab" in r.stdout and "OK" in r.stdout
    assert "stage 1: app" in r.stdout and "stage 2: nas" in r.stdout
    assert "kept up: switch" in r.stdout
    assert "stop the coordinator" in r.stdout
    assert "The shutdown takes up to 420s" in r.stdout


def test_plan_check_json_and_a_battery_too_small(cli):
    r = cli(
        "power",
        "plan",
        "check",
        EXAMPLES / "homelab.toml",
        "--elsewhere",
        "--runtime",
        "300",
        "--json",
    )
    assert r.exit_code == ExitStatus.FAILURE
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["stages"] == [["app"], ["nas"]]
    assert "the battery lasts 300s" in doc["errors"][0]
    assert doc["timeline"][0]["what"].startswith("mains lost")


def test_plan_errors_are_one_line_without_a_traceback(cli, tmp_path):
    bad = write_plan(
        tmp_path, BASE.replace('password_env = "MOTTE_TEST_NUT_PASSWORD"', 'password = "hunter2"')
    )
    r = cli("power", "plan", "check", bad)
    assert r.exit_code == ExitStatus.FAILURE
    # One line naming the file, the line and the key.
    line = rf"motte: error: {re.escape(str(bad))}:\d+: ups.password: a password may not"
    assert re.match(line, r.stderr)
    assert "hint:" in r.stderr and "Traceback" not in r.stderr
    assert "hunter2" not in r.stderr
    r = cli("power", "plan", "check", tmp_path / "missing.toml")
    assert r.exit_code == ExitStatus.FAILURE and "no such shutdown plan" in r.stderr


def test_plan_check_refuses_conflicting_options(cli):
    r = cli(
        "power",
        "plan",
        "check",
        EXAMPLES / "homelab.toml",
        "--elsewhere",
        "--runtime",
        "5",
        "--ask-ups",
    )
    assert r.exit_code == ExitStatus.USAGE


def test_watch_refuses_a_plan_with_errors(cli, tmp_path):
    cyclic = write_plan(
        tmp_path,
        BASE.replace('[hosts.nas]\ndepends_on = ["switch"]', '[hosts.nas]\ndepends_on = ["app"]'),
    )
    r = cli("power", "watch", "--plan", cyclic)
    assert r.exit_code == ExitStatus.FAILURE
    assert "dependency cycle" in r.stderr and "motte power plan check" in r.stderr


def test_status_without_a_watch_says_how_to_start_one(cli):
    r = cli("power", "status")
    assert r.exit_code == ExitStatus.FAILURE
    assert "no coordinator state" in r.stderr and "motte power watch" in r.stderr


def test_status_shows_the_ups_and_the_plans_progress(cli, tmp_path, motte_home):
    from motte.fsutil import atomic_write_text
    from motte.power import load_plan

    plan = load_plan(write_plan(tmp_path))
    c = Coordinator(plan)
    c.observe(UpsReading(("OB", "LB"), 12, 240), 1000.0)  # starts the shutdown
    state = c.p.to_dict()
    log = motte_home / "power" / "lab.events.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text(
        json.dumps(
            {
                "time": "2026-01-01T00:00:00.000+00:00",
                "kind": "SHUTDOWN",
                "message": "lab: shutdown started",
            }
        )
        + "\n"
    )
    state["watch"] = {"pid": os.getpid(), "plan": str(plan.source), "log": str(log)}
    atomic_write_text(motte_home / "power" / "lab.state.json", json.dumps(state))

    r = cli("power", "status")
    assert r.exit_code == 0, r.stderr
    assert "phase shutting-down" in r.stdout and "watch running" in r.stdout
    assert "UPS: OB LB, charge 12%, runtime 240s" in r.stdout
    assert "app" in r.stdout and "stopping" in r.stdout
    assert "shutdown started" in r.stdout

    r = cli("power", "status", "--json", "--plan", "lab")
    doc = json.loads(r.stdout)["plans"][0]
    assert doc["phase"] == "shutting-down"
    assert doc["hosts"]["app"]["state"] == "stopping"
    assert doc["running"]["app:stop"]["deadline"] > 1000
    assert doc["events"][0]["kind"] == "SHUTDOWN"


def test_agent_secret_is_created_once_and_private(cli, tmp_path):
    path = tmp_path / "agent.secret"
    r = cli("power", "agent", "secret", path)
    assert r.exit_code == 0 and os.stat(path).st_mode & 0o777 == 0o600
    r = cli("power", "agent", "secret", path)
    assert r.exit_code == ExitStatus.FAILURE and "not overwriting" in r.stderr


def test_agent_serve_refuses_a_secret_others_can_read(cli, tmp_path):
    path = tmp_path / "agent.secret"
    path.write_text("x" * 64)
    os.chmod(path, 0o644)
    r = cli("power", "agent", "serve", "--secret-file", path, "--stop", "true")
    assert r.exit_code == ExitStatus.FAILURE and "chmod 600" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rack@nut.lan", "--shutdown", "true", "--username", "u"], "--username needs"),
        (["rack@nut.lan:bad", "--shutdown", "true"], "not a TCP port"),
        (
            [
                "rack@nut.lan",
                "--shutdown",
                "true",
                "--password-file",
                "f",
                "--password-env",
                "E",
                "--username",
                "u",
            ],
            "not both",
        ),
    ],
)
def test_secondary_usage_errors(cli, args, message):
    r = cli("power", "secondary", *args)
    assert r.exit_code == ExitStatus.USAGE
    assert message in r.stderr


def test_simulate_names_a_bad_scenario(cli, tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text('[[step]]\nat = 0\nstatus = "OL"\nvolts = 230\n')
    r = cli("power", "simulate", bad)
    assert r.exit_code == ExitStatus.FAILURE
    assert "step[0].volts: unknown key" in r.stderr


def test_plan_check_of_the_two_ups_example_lists_every_ups(cli, monkeypatch):
    monkeypatch.setenv("MOTTE_REHEARSAL_PASSWORD", "rehearsal")
    r = cli("power", "plan", "check", EXAMPLES / "two-ups.toml")
    assert r.exit_code == 0, r.stderr
    assert "UPS rack@127.0.0.1:13492 as motte (primary)" in r.stdout
    assert "UPS aux@127.0.0.1:13493 as motte (primary)" in r.stdout
    assert "the plan runs when any of the 2 is critical" in r.stdout
    assert "ask every UPS for shutdown.return" in r.stdout
    doc = json.loads(cli("power", "plan", "check", EXAMPLES / "two-ups.toml", "--json").stdout)
    assert [u["address"] for u in doc["upses"]] == ["rack@127.0.0.1:13492", "aux@127.0.0.1:13493"]
    assert doc["ups"] == "rack@127.0.0.1:13492,aux@127.0.0.1:13493"
    one = json.loads(
        cli("power", "plan", "check", EXAMPLES / "homelab.toml", "--elsewhere", "--json").stdout
    )
    assert one["ups"] == "rack@127.0.0.1:3493" and len(one["upses"]) == 1


def test_status_shows_each_ups_of_a_plan_with_several(cli, tmp_path, motte_home):
    from motte.fsutil import atomic_write_text
    from motte.power import load_plan
    from motte.power._combine import Supplies

    text = BASE.replace("[ups]\n", "[[ups]]\n").replace(
        "[policy]\n", '[[ups]]\naddress = "aux@10.0.0.2"\n[policy]\n'
    )
    plan = load_plan(write_plan(tmp_path, text))
    supplies = Supplies([u.address for u in plan.upses])
    supplies.observe("rack@127.0.0.1:3493", UpsReading(("OL",), 100, 1800), 1000.0)
    supplies.observe("aux@10.0.0.2:3493", UpsReading(("OB", "LB"), 12, 240), 1000.0)
    supplies.comm_lost("aux@10.0.0.2:3493", "connection refused")
    c = Coordinator(plan)
    c.observe(UpsReading(("OB", "LB"), 12, 240), 1000.0)
    state = c.p.to_dict()
    state["watch"] = {"pid": os.getpid(), "plan": str(plan.source), "upses": supplies.to_list()}
    atomic_write_text(motte_home / "power" / "lab.state.json", json.dumps(state))

    r = cli("power", "status")
    assert r.exit_code == 0, r.stderr
    assert "UPSes (combined): OB LB, charge 12%, runtime 240s" in r.stdout
    assert "rack@127.0.0.1:3493: OL, charge 100%, runtime 1800s" in r.stdout
    assert re.search(r"aux@10\.0\.0\.2:3493: OB LB, charge 12%.*\(unreachable\)", r.stdout)
    doc = json.loads(cli("power", "status", "--json").stdout)["plans"][0]
    assert [u["address"] for u in doc["upses"]] == ["rack@127.0.0.1:3493", "aux@10.0.0.2:3493"]
    assert [u["comm_ok"] for u in doc["upses"]] == [True, False]
    assert doc["reading"]["status"] == "OB LB"  # the combined view, as for one UPS


def test_simulate_says_why_it_cannot_listen(cli):
    import socket

    scenario = EXAMPLES / "long-cut.toml"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli("power", "simulate", scenario, "--listen", f"127.0.0.1:{port}")
    assert r.exit_code == ExitStatus.USAGE
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr
    assert "is a upsd already on that port?" in r.stderr
    r = cli("power", "simulate", scenario, "--listen", "no-such-host.invalid:3493")
    assert r.exit_code == ExitStatus.USAGE and "Traceback" not in r.stderr
    assert "upsd already" not in r.stderr and "an address of this machine" in r.stderr


def test_plan_check_lists_every_problem_of_a_plan_that_does_not_load(cli, tmp_path):
    from tests.power.plans import BASE, write_plan

    bad = write_plan(
        tmp_path,
        BASE.replace("ride_through = 10", 'ride_through = "long"').replace(
            "mains_stable = 5", "mains_stable = -1"
        ),
    )
    r = cli("power", "plan", "check", bad)
    assert r.exit_code == 1
    assert "policy.ride_through: must be a number" in r.stderr
    assert "policy.mains_stable: must be at least 0" in r.stderr
    assert "2 problems in" in r.stderr
    doc = json.loads(cli("power", "plan", "check", bad, "--json").stdout)
    assert doc["ok"] is False and len(doc["errors"]) == 2


@pytest.mark.parametrize("value", ["nan", "inf", "-3"])
def test_plan_check_refuses_a_runtime_that_is_not_seconds(cli, value):
    r = cli("power", "plan", "check", EXAMPLES / "homelab.toml", "--elsewhere", "--runtime", value)
    assert r.exit_code == 2
    assert "--runtime must be a number of seconds" in r.stderr


def test_plan_check_of_the_redundant_example_shows_each_ups_loss(cli, monkeypatch):
    monkeypatch.setenv("MOTTE_REHEARSAL_PASSWORD", "rehearsal")
    r = cli("power", "plan", "check", EXAMPLES / "redundant.toml")
    assert r.exit_code == 0, r.stderr
    assert "nas: needs 1 of rack=1, aux=1" in r.stdout
    assert (
        "rack: stop app -> FSD on rack -> shutdown.return on rack (up to 9s); "
        "keeps running: nas, pi" in r.stdout
    )
    doc = json.loads(cli("power", "plan", "check", EXAMPLES / "redundant.toml", "--json").stdout)
    assert doc["supplies"]["nas"] == {
        "upses": {"rack@127.0.0.1:13494": 1, "aux@127.0.0.1:13495": 1},
        "needed": 1,
    }
    rack = next(x for x in doc["losses"] if x["upses"] == ["rack@127.0.0.1:13494"])
    assert rack["stages"] == [["app"]] and rack["targets"] == ["rack@127.0.0.1:13494"]
    assert rack["running"] == ["nas", "pi"] and not rack["coordinator_stops"]


def test_watch_until_takes_only_a_known_event_kind(cli, monkeypatch):
    monkeypatch.setenv("MOTTE_REHEARSAL_PASSWORD", "rehearsal")
    r = cli("power", "watch", "--plan", EXAMPLES / "rehearsal.toml", "--until", "recoverd")
    assert r.exit_code == ExitStatus.USAGE
    assert "--until recoverd: not an event kind" in r.stderr
