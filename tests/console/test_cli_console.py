"""``motte console`` refuses what would weaken it, and ``motte steward serve --console``
mounts the pages behind their own guard without touching the Steward's API."""

from __future__ import annotations

import warnings

from motte.console import ConsoleConfig, create_console_app
from tests.steward.helpers import make_steward


def test_plain_http_off_loopback_is_refused(cli):
    r = cli("console", "--listen", "192.0.2.2:0")
    assert r.exit_code == 2
    assert "plain HTTP off loopback sends the console's token in clear" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_token_file_others_can_read_is_refused(cli, tmp_path):
    token = tmp_path / "token"
    token.write_text("x" * 40)
    token.chmod(0o644)
    r = cli("console", "--token-file", str(token))
    assert r.exit_code != 0 and "others can read it" in r.stderr and "x" * 40 not in r.stderr


def test_the_steward_mounts_the_console_under_its_own_guard(tmp_path):
    from motte.steward._server import create_app

    with make_steward(tmp_path / "steward") as steward:
        console = create_console_app(
            ConsoleConfig(token="t" * 43, steward_dir=steward.paths.root),
            steward_store=steward.store,
        )
        app = create_app(steward, console=console)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from starlette.testclient import TestClient

            far = TestClient(app, base_url="http://192.0.2.2", client=("192.0.2.9", 1))
            near = TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 1))
        assert far.get("/health").status_code == 200  # the API is as it was
        assert far.get("/console/keeps").status_code == 401
        assert far.post("/console/keeps").status_code == 405
        page = near.get("/console/keeps")
        assert page.status_code == 200 and 'href="/console/log"' in page.text
        assert "0 certificates issued" in page.text
        assert near.get("/nonce").status_code == 200  # unguarded paths stay the Steward's
