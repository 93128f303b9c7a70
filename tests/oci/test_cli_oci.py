import json

from motte.errors import ExitStatus
from tests.oci.workloads import make_workload


def test_package_prints_the_digest(cli, tmp_path):
    wl = make_workload(tmp_path / "w")
    r = cli("package", wl, "--tag", "acme/hello:1.0")
    assert r.exit_code == 0, r.stderr
    assert "packaged acme/hello:1.0" in r.stdout
    assert "sha256:" in r.stdout


def test_package_json(cli, tmp_path):
    wl = make_workload(tmp_path / "w", size=5000)
    r = cli("package", wl, "-t", "acme/hello", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["reference"].startswith("acme/hello:latest@sha256:")
    assert doc["module"] == {"name": "hello.wasm", "size": 5000}


def test_package_errors_are_one_line_without_traceback(cli, tmp_path):
    r = cli("package", tmp_path, "-t", "acme/hello:1")
    assert r.exit_code == ExitStatus.FAILURE
    assert r.stderr.startswith(f"motte: error: {tmp_path}: no Motte.toml")
    assert "Traceback" not in r.stderr

    r = cli("package", make_workload(tmp_path / "w"), "-t", "Bad/Name")
    assert r.exit_code == ExitStatus.USAGE
    assert "lowercase" in r.stderr


def test_package_refuses_a_registry_reference(cli, tmp_path):
    r = cli("package", make_workload(tmp_path / "w"), "-t", "registry.example.com/acme/hello")
    assert r.exit_code == ExitStatus.USAGE
    assert "motte push" in r.stderr


def test_push_and_pull_need_a_registry(cli):
    for verb in ("push", "pull"):
        r = cli(verb, "acme/hello:1")
        assert r.exit_code == ExitStatus.USAGE
        assert "names no registry" in r.stderr


def test_plain_http_to_a_remote_host_is_refused_before_any_connection(cli, tmp_path):
    cli("package", make_workload(tmp_path / "w"), "-t", "acme/hello:1")
    r = cli("push", "http://registry.example.com/acme/hello:1")
    assert r.exit_code == ExitStatus.USAGE
    assert "plain HTTP" in r.stderr and "--allow-insecure-http" in r.stderr


def test_push_of_something_never_packaged(cli):
    r = cli("push", "http://127.0.0.1:1/acme/missing:1")
    assert r.exit_code == ExitStatus.FAILURE
    assert "acme/missing:1: no such tag in the local store" in r.stderr


def test_pull_from_an_unreachable_registry_is_a_one_line_error(cli):
    r = cli("pull", "http://127.0.0.1:1/acme/hello:1")
    assert r.exit_code == ExitStatus.FAILURE
    assert r.stderr.startswith("motte: error: 127.0.0.1:1:")
    assert "Traceback" not in r.stderr
