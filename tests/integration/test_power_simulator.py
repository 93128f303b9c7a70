"""The simulator as a NUT server: our client against it, and Debian's NUT tools against it."""

import asyncio
import datetime
import ipaddress
import json
import shutil
import ssl
import subprocess
import sys
import time

import pytest

from motte.power import Simulator, load_scenario
from motte.power.nut import (
    AccessDeniedError,
    AlreadyLoggedInError,
    AlreadySetUsernameError,
    DataStaleError,
    NutClient,
    NutConnectionError,
    ReadOnlyError,
    UnknownUpsError,
    UsernameRequiredError,
    VarNotSupportedError,
)
from tests.conftest import require
from tests.power.rig import free_port, scenario

pytestmark = pytest.mark.integration

STEPS = """
writable = ["ups.id"]
[variables]
"ups.id" = "rack one"
"ups.delay.shutdown" = 0.5
"ups.delay.start" = 0.5
[[step]]
at = 0
status = "OL"
charge = 100
runtime = 1800
[[step]]
at = 1.0
status = "OB DISCHRG"
[[step]]
at = 1.6
status = "OL CHRG"
[[step]]
at = 30
stale = true
"""


async def serving(sc_path, body, *, tls=None):
    sim = Simulator(load_scenario(sc_path), port=0, tls=tls)
    port = await sim.start()
    task = asyncio.create_task(sim.run())
    try:
        return await body(port, sim)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_reading_and_writing_through_our_client(tmp_path):
    sc = scenario(tmp_path, STEPS)

    async def body(port, sim):
        async with await NutClient.connect("127.0.0.1", port, tls="off") as c:
            assert await c.list_ups() == {"rack": "motte power simulator"}
            assert (await c.list_var("rack"))["ups.status"] == "OL"
            assert await c.get_type("rack", "ups.id") == ("RW", "STRING:32")
            assert await c.get_type("rack", "battery.charge") == ("NUMBER",)
            assert await c.get_desc("rack", "battery.charge") == "Battery charge (percent of full)"
            assert "shutdown.return" in await c.list_cmd("rack")
            assert await c.list_rw("rack") == {"ups.id": "rack one"}
            assert await c.list_enum("rack", "ups.id") == []
            assert await c.protver() == "1.3"
            assert "motte" in await c.ver()
            with pytest.raises(UnknownUpsError):
                await c.get_var("nope", "ups.status")
            with pytest.raises(VarNotSupportedError):
                await c.get_var("rack", "no.such")
            with pytest.raises(UsernameRequiredError):
                await c.set_var("rack", "ups.id", "x")
            await c.authenticate("motte", "pw")
            with pytest.raises(AlreadySetUsernameError):
                await c.authenticate("motte", "pw")
            tricky = 'a "quoted" \\ value'
            await c.set_var("rack", "ups.id", tricky)
            assert await c.get_var("rack", "ups.id") == tricky
            with pytest.raises(ReadOnlyError):
                await c.set_var("rack", "battery.charge", "5")

    asyncio.run(serving(sc, body))


def test_logins_roles_numlogins_and_the_fsd_latch(tmp_path):
    sc = scenario(tmp_path, STEPS)

    async def body(port, sim):
        primary = await NutClient.connect("127.0.0.1", port, tls="off")
        secondary = await NutClient.connect("127.0.0.1", port, tls="off")
        intruder = await NutClient.connect("127.0.0.1", port, tls="off")
        try:
            await primary.authenticate("motte", "pw")
            await primary.login("rack")
            with pytest.raises(AlreadyLoggedInError):
                await primary.login("rack")
            assert await primary.primary("rack") == "PRIMARY-GRANTED"
            await secondary.authenticate("observer", "pw")
            await secondary.login("rack")
            with pytest.raises(AccessDeniedError):
                await secondary.primary("rack")  # a secondary may not claim the UPS
            with pytest.raises(AccessDeniedError):
                await secondary.fsd("rack")
            await intruder.authenticate("motte", "wrong")
            with pytest.raises(AccessDeniedError):
                await intruder.login("rack")
            assert await primary.get_num_logins("rack") == 2
            assert await primary.list_client("rack") == ["127.0.0.1", "127.0.0.1"]
            await primary.fsd("rack")
            assert (await secondary.get_var("rack", "ups.status")).startswith("FSD OL")
            await secondary.close()  # closing is the logout a primary waits for
            deadline = time.monotonic() + 60
            while await primary.get_num_logins("rack") != 1:  # once the server has seen it
                assert time.monotonic() < deadline, "the logout was never counted"
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.2)  # the scenario's short cut passes: FSD stays latched
            assert (await primary.get_var("rack", "ups.status")).startswith("FSD")
        finally:
            for c in (primary, secondary, intruder):
                await c.close()

    asyncio.run(serving(sc, body))


def test_shutdown_return_cuts_the_load_and_restores_it_when_mains_is_back(tmp_path):
    # STEPS with a 3 s cut: long enough that polling sees the load off on battery, however
    # late a busy machine runs each poll.
    sc = scenario(tmp_path, STEPS.replace("at = 1.6", "at = 4.0"))

    async def body(port, sim):
        async with await NutClient.connect("127.0.0.1", port, tls="off") as c:
            await c.authenticate("motte", "pw")
            await c.login("rack")
            await c.fsd("rack")
            await c.instcmd("rack", "shutdown.return")
            seen = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = await c.get_var("rack", "ups.status")
                if not seen or seen[-1] != status:
                    seen.append(status)
                if status == "OL CHRG":
                    break
                await asyncio.sleep(0.1)
            return seen

    seen = asyncio.run(serving(sc, body))
    assert seen[0] == "FSD OL"
    assert "FSD OFF OB DISCHRG" in seen  # off after ups.delay.shutdown, on battery
    assert seen[-1] == "OL CHRG"  # back after mains returned and ups.delay.start: FSD cleared


def test_stale_data_and_a_vanishing_server(tmp_path):
    sc = scenario(
        tmp_path,
        """
        [[step]]
        at = 0
        status = "OL"
        [[step]]
        at = 0.3
        stale = true
        [[step]]
        at = 2.3
        stale = false
        offline = true
        [[step]]
        at = 4.3
        offline = false
        """,
    )
    # Each state lasts 2 s and the test waits for it (it does not sleep into it): a busy
    # machine that polls late still sees every one.

    async def until_raises(call, error, before=()):
        """Until ``call`` raises ``error`` (raising ``before``, the state before it, or nothing
        meanwhile)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                await call()
            except error as e:
                return e
            except before:
                pass
            assert time.monotonic() < deadline, f"never {error.__name__}"
            await asyncio.sleep(0.05)

    async def body(port, sim):
        c = await NutClient.connect("127.0.0.1", port, tls="off")
        await until_raises(lambda: c.list_var("rack"), DataStaleError)
        await until_raises(lambda: c.list_var("rack"), NutConnectionError, DataStaleError)
        with pytest.raises(NutConnectionError, match="cannot connect"):
            await NutClient.connect("127.0.0.1", port, tls="off")
        deadline = time.monotonic() + 60
        while True:
            try:
                again = await NutClient.connect("127.0.0.1", port, tls="off")
                break
            except NutConnectionError:
                assert time.monotonic() < deadline, "the server never came back"
                await asyncio.sleep(0.05)
        async with again:
            return await again.get_var("rack", "ups.status")

    assert asyncio.run(serving(sc, body)) == "OL"


def make_cert(folder):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "motte test upsd")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_starttls_when_offered_verified_against_the_given_ca(tmp_path):
    sc = scenario(tmp_path, STEPS)
    cert, key = make_cert(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def body(port, sim):
        trusting = ssl.create_default_context(cafile=str(cert))
        async with await NutClient.connect(
            "127.0.0.1", port, tls="required", ssl_context=trusting
        ) as c:
            assert c.tls
            await c.authenticate("motte", "pw")  # the password travels inside TLS
            await c.login("rack")
            assert await c.get_var("rack", "ups.status") == "OL"
        with pytest.raises(NutConnectionError, match="TLS with NUT server"):
            await NutClient.connect("127.0.0.1", port, tls="if-offered")  # untrusted cert
        return True

    assert asyncio.run(serving(sc, body, tls=server_ctx))

    async def plain(port, sim):
        async with await NutClient.connect("127.0.0.1", port) as c:  # if-offered: not offered
            assert not c.tls
        with pytest.raises(NutConnectionError, match="does not offer STARTTLS"):
            await NutClient.connect("127.0.0.1", port, tls="required")
        return True

    assert asyncio.run(serving(sc, plain))


def test_primary_falls_back_to_master_on_an_older_server(tmp_path):
    """A server before NUT 2.8 knows MASTER but answers PRIMARY with UNKNOWN-COMMAND."""

    async def old_upsd(reader, writer):
        while line := await reader.readline():
            word = line.split()[0]
            reply = {
                b"PRIMARY": b"ERR UNKNOWN-COMMAND\n",
                b"MASTER": b"OK MASTER-GRANTED\n",
                b"PROTVER": b"ERR UNKNOWN-COMMAND\n",
                b"NETVER": b"1.2\n",
            }.get(word, b"OK\n")
            writer.write(reply)
            await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(old_upsd, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, await NutClient.connect("127.0.0.1", port, tls="off") as c:
            return await c.primary("ups"), await c.protver()

    assert asyncio.run(main()) == ("MASTER-GRANTED", "1.2")


# -- Debian's nut-client tools against the simulator ---------------------------------------


@pytest.fixture
def needs_nut_client() -> None:
    require(shutil.which("upsc") is not None, "upsc, upsrw, upscmd (apt-get install nut-client)")


@pytest.mark.usefixtures("needs_nut_client")
def test_upsc_upsrw_and_upscmd_work_against_the_simulator(tmp_path):
    port = free_port()
    sc = scenario(tmp_path, STEPS)
    proc = subprocess.Popen(
        [*MOTTE, "power", "simulate", str(sc), "--listen", f"127.0.0.1:{port}", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port)
        ups = f"rack@127.0.0.1:{port}"
        out = run(["upsc", ups])
        assert "ups.status: OL" in out and "battery.charge: 100" in out
        assert run(["upsc", "-l", f"127.0.0.1:{port}"]).strip() == "rack"
        assert "ups.id" in run(["upsrw", ups])
        assert "shutdown.return" in run(["upscmd", "-l", ups])
        run(["upsrw", "-s", "ups.id=rehearsed", "-u", "motte", "-p", "pw", ups])
        assert run(["upsc", ups, "ups.id"]).strip() == "rehearsed"
        denied = subprocess.run(
            ["upsrw", "-s", "ups.id=x", "-u", "motte", "-p", "bad", ups],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "ACCESS-DENIED" in denied.stdout + denied.stderr
        run(["upscmd", "-u", "motte", "-p", "pw", ups, "shutdown.return"])
        deadline = time.monotonic() + 60
        while "OFF" not in run(["upsc", ups, "ups.status"]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert '"message": "motte: shutdown.return: the load goes off in 0.5s"' in out


MOTTE = [sys.executable, "-m", "motte"]


def run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    return proc.stdout


def wait_for_port(port, timeout=60.0):
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port}")


def test_the_monitor_reports_a_lost_server_once_and_reconnects(tmp_path):
    from motte.power import UpsConfig
    from motte.power._monitor import Reading, UpsMonitor
    from motte.power.nut import UpsAddress

    sc = scenario(
        tmp_path,
        """
        [[step]]
        at = 0
        status = "OL"
        [[step]]
        at = 2.0
        offline = true
        [[step]]
        at = 4.0
        offline = false
        status = "OB DISCHRG"
        """,
    )

    async def body(port, sim):
        queue = asyncio.Queue()
        config = UpsConfig(UpsAddress("rack", "127.0.0.1", port), tls="off")
        monitor = asyncio.create_task(UpsMonitor(config, queue, role=None, poll_interval=0.1).run())
        seen = []
        try:
            while not (seen and isinstance(seen[-1], Reading) and seen[-1].reading.on_battery):
                seen.append(await asyncio.wait_for(queue.get(), 60))
        finally:
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)
        return seen

    seen = asyncio.run(serving(sc, body))
    shapes = [type(item).__name__ for item in seen]
    assert shapes == ["Reading", "Lost", "Reading"]  # one Lost, however many retries
    assert seen[0].reading.status == ("OL",)


def test_plan_check_can_ask_the_ups_for_its_runtime(tmp_path, cli):
    from tests.power.rig import lab_plan, recorder

    sc = scenario(tmp_path, '[[step]]\nat = 0\nstatus = "OL"\nruntime = 20\n')

    async def body(port, sim):
        rec, _ = recorder(tmp_path)
        plan = lab_plan(tmp_path, port, rec, policy="ride_through = 5")
        return await asyncio.to_thread(cli, "power", "plan", "check", plan, "--ask-ups", "--json")

    r = asyncio.run(serving(sc, body))
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["runtime"] == 20
    assert "the battery lasts 20s at the current load" in doc["errors"][0]


def test_a_busy_monitor_always_stops_when_cancelled(tmp_path):
    """Regression: asyncio.wait_for on 3.11 swallowed a cancellation racing a reply, and a
    monitor polling every few milliseconds then ran forever (and so did the watch)."""
    import random

    from motte.power import UpsConfig
    from motte.power._monitor import UpsMonitor
    from motte.power.nut import UpsAddress
    from tests.power.rig import stop_tasks

    sc = scenario(tmp_path, '[[step]]\nat = 0\nstatus = "OL"\n')

    async def body(port, sim):
        config = UpsConfig(UpsAddress("rack", "127.0.0.1", port), tls="off")
        for _ in range(30):
            queue = asyncio.Queue()
            task = asyncio.create_task(
                UpsMonitor(config, queue, role=None, poll_interval=0.001).run()
            )
            await asyncio.sleep(random.uniform(0.01, 0.05))
            await stop_tasks(task, within=10)
        return True

    assert asyncio.run(serving(sc, body))
