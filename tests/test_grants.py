"""Requests and grants (motte.manifest._grants): the --grant flags, the host policy file, and
what a package run by reference or this host's own manifest gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from motte.errors import UsageError
from motte.manifest import (
    Grant,
    GrantError,
    GrantRefusedError,
    Grants,
    apply_grants,
    grant_from_flag,
    grants_from_flags,
    load_host_policy,
    parse_manifest,
)

ASKING = """workload = "app.wasm"
stdout = { file = "logs/out.txt" }
env = { HOME = { host = "HOME" }, MINE = "own" }

[[dir]]
host = "/"
guest = "/host"
writable = true

[[dir]]
name = "cache"
host = "cache"
guest = "/var/cache"
"""
SERVING = """workload = "app.wasm"

[[listen]]
name = "web"
port = 443
protocol = "http"

[[listen]]
name = "admin"
port = 9000
protocol = "tcp"
"""


def package(text: str = ASKING):
    return parse_manifest(
        text, base_dir=Path("/nonexistent"), name="acme/app/Motte.toml", package=True
    )


# -- flags -----------------------------------------------------------------------------------


def test_flags_of_every_kind(tmp_path):
    g = grants_from_flags(
        [
            "dir:data=./data",
            "dir:out=/srv/out:writable",
            "env:LANG",
            "listen:web",
            "listen:api=8443",
            "listen:admin=127.0.0.1:9001",
            "listen:v6=[::1]:0",
            "listen:all=::",
            "stdout=out.txt",
            "secret:db-password",
            "secret:content-key/acme/db",
        ],
        base=tmp_path,
    )
    assert g.get("secret", "db-password") == Grant("secret", "db-password")
    assert g.get("secret", "content-key/acme/db") is not None
    assert g.get("dir", "data") == Grant("dir", "data", path=tmp_path / "data")
    assert g.get("dir", "out") == Grant("dir", "out", path=Path("/srv/out"), writable=True)
    assert g.get("env", "LANG") == Grant("env", "LANG")
    assert g.get("listen", "web") == Grant("listen", "web")
    assert g.get("listen", "api") == Grant("listen", "api", port=8443)
    assert g.get("listen", "admin") == Grant("listen", "admin", address="127.0.0.1", port=9001)
    assert g.get("listen", "v6") == Grant("listen", "v6", address="::1", port=0)
    assert g.get("listen", "all") == Grant("listen", "all", address="::")
    assert g.get("stdout", "stdout") == Grant("stdout", "stdout", path=tmp_path / "out.txt")


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("dir:data", "expected dir:NAME=HOSTPATH[:writable]"),
        ("dir=/srv", "expected dir:NAME..."),
        ("dir:a b=/srv", "directory name 'a b'"),
        ("env:LANG=C", "expected env:NAME"),
        ("listen:web=99999", "port '99999': expected 0 to 65535"),
        ("listen:web=example.com:80", "'example.com' is not an IP address"),
        ("stdout:x=f", "expected stdout=FILE"),
        ("stdout", "expected stdout=FILE"),
        ("dri:x=/", "unknown grant kind 'dri'"),
        ("secret:db=hunter2", "expected secret:NAME (the value comes from the Steward"),
        ("secret:DB", "'DB' is not a secret name"),
        ("secret:a//b", "'a//b' is not a secret name"),
        ("secret", "expected secret:NAME..."),
        ("volume:Data", "volume name 'Data'"),
        ("volume:db=", "the host directory is empty"),
        ("connect:api=exa_mple.com", "'exa_mple.com' is not a host name or IP address"),
        ("connect:api=a.example,b.example", "two addresses"),
        ("connect:api=ca=", "ca= names one CA bundle file"),
        ("connect:api=unsafe_everything", "unknown item"),
        ("connect:api=h.example:0", "expected a port from 1 to 65535"),
    ],
)
def test_bad_flags_name_the_flag(flag, message):
    with pytest.raises((UsageError, GrantError)) as e:
        grant_from_flag(flag, Path("/"))
    assert e.value.message.startswith(f"--grant {flag}: ")
    assert message in e.value.message


def test_a_thing_is_granted_once():
    with pytest.raises(GrantError, match="dir:a is already granted by --grant dir:a=/x"):
        grants_from_flags(["dir:a=/x", "dir:a=/y"])


# -- a package gets only what is granted ----------------------------------------------------


def test_a_package_is_refused_one_line_per_request(tmp_path):
    with pytest.raises(GrantRefusedError) as e:
        apply_grants(package(), package="acme/app:1", environ={"HOME": "/root"}, cwd=tmp_path)
    assert e.value.missing == (
        "dir host: a host directory at /host, writable (the package names /: choose a "
        "directory yourself): --grant dir:host=HOSTPATH:writable",
        "dir cache: a host directory at /var/cache, read-only: --grant dir:cache=./cache",
        "stdout: writes a host file: --grant stdout=./logs/out.txt",
        "env HOME: the host's HOME: --grant env:HOME",
    )
    assert e.value.message.startswith("acme/app:1 asks for 4 thing(s) this host has not granted")
    assert "host-policy.toml" in (e.value.hint or "")


def test_every_port_needs_a_grant_and_a_granted_one_binds_loopback():
    with pytest.raises(GrantRefusedError) as e:
        apply_grants(package(SERVING), package="acme/web:1")
    assert e.value.missing == (
        "listen web: port 443 (http), a privileged port: --grant listen:web=443 (or another "
        "port: --grant listen:web=8443)",
        "listen admin: port 9000 (tcp): --grant listen:admin (loopback), or "
        "--grant listen:admin=ADDRESS:PORT",
    )
    g = apply_grants(
        package(SERVING),
        package="acme/web:1",
        flags=grants_from_flags(["listen:web=0", "listen:admin"]),
    )
    # Loopback unless a grant says where.
    assert [(lst.name, lst.address, lst.port) for lst in g.manifest.listen] == [
        ("web", None, 0),
        ("admin", None, 9000),
    ]
    policy = Grants(
        [
            Grant("listen", "web", address="0.0.0.0", port=8443),
            Grant("listen", "admin"),
        ]
    )
    g = apply_grants(package(SERVING), package="acme/web:1", policy=policy)
    assert (g.manifest.listen[0].address, g.manifest.listen[0].port) == ("0.0.0.0", 8443)


@pytest.mark.parametrize(
    ("host", "why"),
    [("../up", "outside"), ("/etc", "absolute"), ("link/x", "a link out"), (".", "the cwd")],
)
def test_a_path_the_package_chose_outside_the_directory_is_never_offered(tmp_path, host, why):
    (tmp_path / "link").symlink_to("/")
    m = package(f'workload = "a.wasm"\n[[dir]]\nhost = "{host}"\nguest = "/d"\n')
    with pytest.raises(GrantRefusedError) as e:
        apply_grants(m, package="p", cwd=tmp_path)
    assert e.value.missing[0].endswith("--grant dir:d=HOSTPATH"), why


def test_granted_a_package_runs_with_the_hosts_choices_only(tmp_path):
    flags = grants_from_flags(
        ["dir:host=/srv/ro", "dir:cache=c:writable", "stdout=o.txt", "env:HOME"],
        base=tmp_path,
    )
    g = apply_grants(
        package(), package="acme/app:1", flags=flags, environ={"HOME": "/root", "X": "no"}
    )
    m = g.manifest
    assert g.mode == "package"
    # The grant decides the host path and the mode (read-only though writable was asked).
    assert [(d.name, d.host, d.guest, d.writable) for d in m.dir] == [
        ("host", Path("/srv/ro"), "/host", False),
        ("cache", tmp_path / "c", "/var/cache", True),
    ]
    assert m.stdout.path == tmp_path / "o.txt"
    assert dict(m.env) == {"MINE": "own", "HOME": "/root"} and not m.host_env


def test_the_host_policy_grants_and_a_flag_overrides_it(tmp_path):
    policy = Grants(
        [
            Grant("dir", "cache", path=Path("/srv/cache")),
            Grant("env", "HOME"),
            Grant("dir", "host", path=Path("/srv/h")),
            Grant("stdout", "stdout", path=Path("/o")),
            Grant("listen", "web", address="0.0.0.0", port=8443),  # asked for by nothing
        ]
    )
    flags = grants_from_flags(["dir:cache=/mnt/cache"])
    g = apply_grants(package(), package="p", flags=flags, policy=policy, environ={})
    assert {d.name: d.host for d in g.manifest.dir} == {
        "host": Path("/srv/h"),
        "cache": Path("/mnt/cache"),
    }
    assert g.manifest.stdout.path == Path("/o")
    assert "env HOME: the host's HOME is not set" in g.granted


def test_a_flag_that_grants_nothing_asked_for_is_an_error():
    with pytest.raises(GrantError) as e:
        apply_grants(package(), package="p", flags=grants_from_flags(["dir:hots=/srv"]))
    assert e.value.message.startswith("--grant dir:hots=/srv: the workload asks for no dir:hots")
    assert "(it asks for: dir:host, dir:cache, stdout, env:HOME)" in e.value.message


def test_this_hosts_own_manifest_is_granted_as_written(tmp_path):
    m = parse_manifest(ASKING, base_dir=tmp_path)
    g = apply_grants(m, package=None, environ={"HOME": "/root"}, cwd=tmp_path)
    assert g.mode == "local"
    assert [(d.host, d.writable) for d in g.manifest.dir] == [
        (Path("/"), True),
        (tmp_path / "cache", False),
    ]
    assert g.manifest.stdout.path == tmp_path / "logs" / "out.txt"
    assert g.manifest.env["HOME"] == "/root"
    # A flag replaces a path, and the mode.
    g = apply_grants(m, package=None, flags=grants_from_flags(["dir:host=/srv"]), environ={})
    assert g.manifest.dir[0].host == Path("/srv") and not g.manifest.dir[0].writable
    # A privileged port as written; loopback unless a flag says where (the host's decision).
    s = parse_manifest(SERVING, base_dir=tmp_path)
    g = apply_grants(s, package=None)
    assert [(lst.port, lst.address) for lst in g.manifest.listen] == [(443, None), (9000, None)]
    g = apply_grants(s, package=None, flags=grants_from_flags(["listen:web=0.0.0.0:8443"]))
    assert (g.manifest.listen[0].address, g.manifest.listen[0].port) == ("0.0.0.0", 8443)


SECRETS = """workload = "app.wasm"

[[secret]]
name = "db-password"
file = "/run/secrets/db-password"

[[secret]]
name = "db-password"
env = "DB_PASSWORD"

[[secret]]
name = "api/token"
version = 3
env = "API_TOKEN"
"""


def test_a_package_gets_a_secret_only_if_the_host_grants_it():
    m = package(SECRETS)
    with pytest.raises(GrantRefusedError) as e:
        apply_grants(m, package="acme/db:1")
    # One line per secret (asked for twice, granted once), each with the flag to copy.
    assert e.value.missing == (
        "secret db-password: from the Steward, to /run/secrets/db-password, $DB_PASSWORD: "
        "--grant secret:db-password",
        "secret api/token (version 3): from the Steward, to $API_TOKEN: --grant secret:api/token",
    )
    # Granting one is not enough: the package gets all it asked for or does not run.
    with pytest.raises(GrantRefusedError) as e:
        apply_grants(m, package="acme/db:1", flags=grants_from_flags(["secret:db-password"]))
    assert [line.split(":")[0] for line in e.value.missing] == ["secret api/token (version 3)"]
    # A flag and the host policy together.
    g = apply_grants(
        m,
        package="acme/db:1",
        flags=grants_from_flags(["secret:db-password"]),
        policy=Grants([Grant("secret", "api/token")]),
    )
    assert g.manifest.secret == m.secret  # the requests, unchanged: the Steward decides next
    assert "secret db-password to /run/secrets/db-password, $DB_PASSWORD (if the Steward " in (
        "; ".join(g.granted)
    )
    # A secret nobody asked for is a typo, not a grant.
    with pytest.raises(GrantError) as e:
        apply_grants(m, package="p", flags=grants_from_flags(["secret:db-pasword"]))
    assert "asks for no secret:db-pasword (it asks for: secret:db-password, secret:api/token)" in (
        e.value.message
    )


def test_this_hosts_own_manifest_gets_its_secrets_as_written():
    m = parse_manifest(SECRETS, base_dir=Path("/w"))
    g = apply_grants(m, package=None)
    assert g.mode == "local" and g.manifest.secret == m.secret


# -- the host policy file ------------------------------------------------------------------


POLICY = """# the host's standing grants
env = ["LANG"]
stdout = "/var/log/motte/out.log"

[dir.data]
host = "/srv/data"

[listen.web]
address = "127.0.0.1"
port = 8443

[secret."db-password"]

[package."registry.example/acme/web".listen.web]
address = "::"
port = 443

[package."registry.example/acme/web".dir.data]
host = "/srv/web-data"
writable = true

[package."registry.example/acme/db"]
secret = ["db-password", "content-key/acme/db"]
"""


def test_the_host_policy_file(tmp_path):
    path = tmp_path / "host-policy.toml"
    path.write_text(POLICY)
    policy = load_host_policy(path)
    everyone = policy.everyone
    assert everyone.get("env", "LANG") == Grant("env", "LANG")
    assert everyone.get("stdout", "stdout").path == Path("/var/log/motte/out.log")
    assert everyone.get("dir", "data") == Grant("dir", "data", path=Path("/srv/data"))
    assert everyone.get("listen", "web") == Grant("listen", "web", address="127.0.0.1", port=8443)
    web = policy.for_package("registry.example/acme/web")
    assert web.get("listen", "web") == Grant("listen", "web", address="::", port=443)
    assert web.get("dir", "data") == Grant("dir", "data", path=Path("/srv/web-data"), writable=True)
    assert web.get("env", "LANG") == Grant("env", "LANG")  # from everyone
    assert policy.for_package("acme/web") == everyone  # another registry is another package
    assert everyone.get("dir", "data").where == f"{path}:5"
    assert everyone.get("secret", "db-password").where == f"{path}:12"
    db = policy.for_package("registry.example/acme/db")
    assert db.get("secret", "content-key/acme/db") is not None
    assert db.get("secret", "db-password").where == f"{path}:23"  # the package's own


def test_the_host_policy_is_found_under_motte_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTTE_HOME", str(tmp_path))
    assert load_host_policy().source is None  # neither file: the empty policy
    (tmp_path / "host-policy.toml").write_text('env = ["TZ"]\n')
    policy = load_host_policy()
    assert policy.source == tmp_path / "host-policy.toml"
    assert policy.everyone.get("env", "TZ") is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("evn = []", "host-policy.toml:1: evn: unknown key"),
        (
            "[dir.data]\nhost = 'data'",
            "host-policy.toml:2: dir.data.host: must be an absolute path",
        ),
        ("[dir.data]\nhots = '/x'", "host-policy.toml:1: dir.data.host: is required"),
        ("[listen.web]\nport = 70000", "host-policy.toml:2: listen.web.port: must be between"),
        ("[listen.web]\naddress = 'any'", "listen.web.address: 'any' is not an IP address"),
        ("[secret.db]\nfrom = 'vault'", "host-policy.toml:2: secret.db.from: unknown key"),
        ("secret = ['Upper']", "host-policy.toml:1: 'Upper' is not a secret name"),
        ("secret = 'db'", "host-policy.toml:1: secret: must be a list of non-empty strings"),
        ("[volume.db]\nhost = 'x'", "host-policy.toml:2: volume.db.host: must be an absolute"),
        ("[volume.db]\nhots = '/x'", "host-policy.toml:2: volume.db.hots: unknown key"),
        ("volume = ['Db']", "host-policy.toml:1: volume name 'Db'"),
        ("[package.x]\nlisten = 3", "host-policy.toml:2: package.x.listen: must be a table"),
        ("stdout = 3", "host-policy.toml:1: stdout: must be a non-empty string"),
        ("[dir.'a b']\nhost = '/x'", "dir.a b: use 1 to 63 letters"),
    ],
)
def test_the_host_policy_is_strict(tmp_path, text, message):
    path = tmp_path / "host-policy.toml"
    path.write_text(text)
    with pytest.raises((GrantError, UsageError)) as e:
        load_host_policy(path)
    assert message in e.value.message


# -- the manifest's side ----------------------------------------------------------------------


def test_dir_names_default_to_the_guest_paths_last_part():
    m = package(
        'workload = "a"\n[[dir]]\nhost = "x"\nguest = "/"\n[[dir]]\nhost = "y"\nguest = "/a/b.c"\n'
    )
    assert [d.name for d in m.dir] == ["root", "b-c"]


def test_two_dirs_with_one_name_are_an_error():
    with pytest.raises(Exception, match=r"dir\[1\].guest: directory name 'data' is already used"):
        package(
            'workload = "a"\n[[dir]]\nhost = "x"\nguest = "/data"\n'
            '[[dir]]\nhost = "y"\nguest = "/b/data"\n'
        )


def test_a_package_path_is_a_request_not_a_host_path():
    m = package()
    assert m.dir[0].host == Path("/") and m.dir[1].host == Path("cache")
    assert m.stdout.path == Path("logs/out.txt")
