"""The host agent, served by uvicorn on 127.0.0.1: authentication, replay, drain and stop."""

import asyncio
import json
import os
import secrets
import time

import httpx
import pytest

from motte.power import AgentApp, AgentClient, AgentError, create_secret, load_secret, serve_agent
from motte.power._agent import request_signature

pytestmark = pytest.mark.integration


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "agent.secret"
    create_secret(path)
    return path


def test_secret_files_are_created_private_and_checked(tmp_path, secret_file):
    assert os.stat(secret_file).st_mode & 0o777 == 0o600
    assert len(load_secret(secret_file)) == 64
    with pytest.raises(AgentError, match="already exists"):
        create_secret(secret_file)
    os.chmod(secret_file, 0o640)
    with pytest.raises(AgentError, match="readable by other users"):
        load_secret(secret_file)
    short = tmp_path / "short"
    short.write_text("abc")
    os.chmod(short, 0o600)
    with pytest.raises(AgentError, match="shorter than 32"):
        load_secret(short)


async def with_agent(app, body):
    ready = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve_agent(app, "127.0.0.1", 0, started=ready.set_result))
    port = await asyncio.wait_for(ready, 10)
    try:
        return await body(f"http://127.0.0.1:{port}")
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


def signed_headers(secret, method, path, body=b"", ts=None, nonce=None):
    ts = str(int(time.time()) if ts is None else ts)
    nonce = nonce or secrets.token_hex(16)
    sig = request_signature(secret, method, path, ts, nonce, body)
    return {"authorization": f"Motte-HMAC ts={ts},nonce={nonce},sig={sig}"}


def test_drain_and_stop_run_the_agents_own_commands(tmp_path, secret_file):
    log = tmp_path / "log"
    app = AgentApp(
        load_secret(secret_file),
        drain=("sh", "-c", f'echo "drain $MOTTE_DEADLINE" >> {log}; sleep 0.3'),
        stop=("sh", "-c", f"echo stop >> {log}"),
    )

    async def body(url):
        client = AgentClient(url, secret_file)
        status, data = await client.request("GET", "/v1/status")
        assert status == 200 and data["drain"]["state"] == "idle"
        ok, detail, timed_out = await client.run("drain", deadline=time.time() + 20)
        assert ok and not timed_out, detail
        ok, _, _ = await client.run("stop", deadline=time.time() + 20)
        assert ok
        _, data = await client.request("GET", "/v1/status")
        return data

    data = asyncio.run(with_agent(app, body))
    assert data["drain"]["state"] == "ok" and data["stop"]["state"] == "ok"
    lines = log.read_text().split("\n")
    assert lines[0].startswith("drain ") and 15 <= int(lines[0].split()[1]) <= 20
    assert lines[1] == "stop"


def test_requests_without_the_secret_or_replayed_or_stale_are_refused(tmp_path, secret_file):
    secret = load_secret(secret_file)
    app = AgentApp(secret, drain=None, stop=("true",))
    other = tmp_path / "other.secret"
    create_secret(other)

    async def body(url):
        with pytest.raises(AgentError, match="refused our signature"):
            await AgentClient(url, other).request("GET", "/v1/status")
        async with httpx.AsyncClient() as http:
            assert (await http.get(url + "/v1/status")).status_code == 401  # no header at all
            headers = signed_headers(secret, "GET", "/v1/status")
            assert (await http.get(url + "/v1/status", headers=headers)).status_code == 200
            assert (await http.get(url + "/v1/status", headers=headers)).status_code == 401
            old = signed_headers(secret, "GET", "/v1/status", ts=time.time() - 600)
            assert (await http.get(url + "/v1/status", headers=old)).status_code == 401
            # A signature for one path does not open another.
            wrong = signed_headers(secret, "GET", "/v1/status")
            r = await http.post(url + "/v1/stop", headers=wrong, content=b"{}")
            assert r.status_code == 401
            big = b"x" * 5000
            r = await http.post(
                url + "/v1/stop",
                content=big,
                headers=signed_headers(secret, "POST", "/v1/stop", big),
            )
            assert r.status_code == 413
            r = await http.get(url + "/v1/exec", headers=signed_headers(secret, "GET", "/v1/exec"))
            assert r.status_code == 404
        return app.jobs["stop"].state

    assert asyncio.run(with_agent(app, body)) == "idle"  # nothing refused ever ran


def test_an_answer_not_signed_with_the_secret_is_not_believed(secret_file):
    secret = load_secret(secret_file)
    inner = AgentApp(secret, drain=None, stop=("true",))

    async def tampering(scope, receive, send):
        async def forge(message):
            if message["type"] == "http.response.body":
                data = json.loads(message["body"])  # same length, so Content-Length holds
                data["host"] = "X" * len(data["host"])
                message = {**message, "body": json.dumps(data, sort_keys=True).encode()}
            await send(message)

        await inner(scope, receive, forge)

    async def body(url):
        with pytest.raises(AgentError, match="not signed with the shared secret"):
            await AgentClient(url, secret_file).request("GET", "/v1/status")
        # And a forged "stopped" is never taken as a host going down.
        ok, detail, _ = await AgentClient(url, secret_file).run("stop", deadline=time.time() + 5)
        return ok, detail

    ok, detail = asyncio.run(with_agent(tampering, body))
    assert not ok and "not signed" in detail


def test_an_agent_that_goes_away_after_accepting_stop_means_the_host_is_going_down(
    secret_file,
):
    app = AgentApp(load_secret(secret_file), drain=None, stop=("sleep", "30"))

    async def main():
        ready = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(serve_agent(app, "127.0.0.1", 0, started=ready.set_result))
        url = f"http://127.0.0.1:{await asyncio.wait_for(ready, 10)}"
        client = AgentClient(url, secret_file)
        # Before acceptance, an unreachable agent is a failure, not "down".
        bogus = AgentClient("http://127.0.0.1:9", secret_file)
        ok, detail, _ = await bogus.run("stop", deadline=time.time() + 5)
        assert not ok and "127.0.0.1:9" in detail
        run = asyncio.create_task(client.run("stop", deadline=time.time() + 20))
        while app.jobs["stop"].state != "running":  # accepted: the host starts going down
            await asyncio.sleep(0.05)
        server.cancel()  # ... and its agent goes away with it
        await asyncio.gather(server, return_exceptions=True)
        return await run

    ok, detail, timed_out = asyncio.run(main())
    assert ok and not timed_out, detail
    assert detail == "agent went away after accepting stop"
