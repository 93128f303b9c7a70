"""Motte.toml: every key parses to its typed value; every mistake is an error naming the file,
the line and the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from motte.errors import ConfigError, NotFoundError, UsageError
from motte.manifest import (
    INHERIT,
    Dir,
    Limits,
    Listen,
    ManifestError,
    Stdio,
    dir_from_flag,
    env_from_flag,
    limit_from_flag,
    load_manifest,
    manifest_for_module,
    parse_manifest,
    resolve_target,
)

BASE = Path("/srv/app")

FULL = """\
workload = "app.wasm"
args = ["--port", "8080"]
steward = "https://steward.example.com/attest"
stdin = "inherit"
stdout = "inherit"
stderr = { file = "logs/err.txt" }

[env]
GREETING = "Hello"
"WITH SPACE" = "ok"

[[dir]]
host = "data"
guest = "/data"

[[dir]]
host = "/var/spool/app"
guest = "/spool"
writable = true

[limits]
memory = 64
cpu_time = 2.5
wall_time = 10

[[listen]]
name = "web"
port = 8443
protocol = "http"

[[listen]]
name = "raw"
port = 9000
protocol = "tcp"
tls = false
"""


def parse(text: str):
    return parse_manifest(text, base_dir=BASE)


def test_every_key_parses_to_its_value():
    m = parse(FULL)
    assert m.workload.path == BASE / "app.wasm"
    assert m.workload.digest is None
    assert m.args == ("--port", "8080")
    assert m.steward == "https://steward.example.com/attest"
    assert m.stdin == m.stdout == INHERIT
    assert m.stderr == Stdio("file", BASE / "logs" / "err.txt")
    assert dict(m.env) == {"GREETING": "Hello", "WITH SPACE": "ok"}
    assert m.dir == (
        Dir(BASE / "data", "/data", writable=False),
        Dir(Path("/var/spool/app"), "/spool", writable=True),
    )
    assert m.limits == Limits(memory=64, cpu_time=2.5, wall_time=10.0)
    assert m.listen == (Listen("web", 8443, "http", tls=True), Listen("raw", 9000, "tcp", False))


@pytest.mark.parametrize(("key", "value"), [("stdin", '"null"'), ("stdout", '{ file = "o" }')])
def test_a_served_workload_cannot_set_stdin_or_stdout(key, value):
    with pytest.raises(ManifestError) as e:
        parse(
            f'workload = "a.wasm"\n{key} = {value}\n[[listen]]\nname = "w"\nport = 80\n'
            'protocol = "http"'
        )
    assert e.value.message.startswith(
        f"Motte.toml:2: {key} cannot be set for a workload with [[listen]] entries"
    )


def test_defaults_are_the_empty_grant():
    m = parse('workload = "a.wasm"')
    assert m.args == () and dict(m.env) == {} and m.dir == () and m.listen == ()
    assert (m.stdin, m.stdout, m.stderr) == (INHERIT, INHERIT, INHERIT)
    assert m.limits == Limits(memory=256, cpu_time=60.0, wall_time=300.0)
    assert m.steward is None


def test_a_local_steward_may_be_plain_http_on_loopback_only():
    for url in ("http://127.0.0.1:8440", "http://localhost:8440", "http://[::1]:8440"):
        assert parse(f'workload = "a.wasm"\nsteward = "{url}"').steward == url
    with pytest.raises(ManifestError, match="must be an https:// URL") as e:
        parse('workload = "a.wasm"\nsteward = "http://10.0.0.1:8440"')
    assert "loopback" in (e.value.hint or "")


def test_where_names_the_line_of_each_grant():
    m = parse(FULL)
    assert m.workload.where == "Motte.toml:1"
    assert [d.where for d in m.dir] == ["Motte.toml:12", "Motte.toml:16"]
    assert [x.where for x in m.listen] == ["Motte.toml:26", "Motte.toml:31"]


def test_workload_by_digest():
    digest = "sha256:" + "ab" * 32
    m = parse(f'workload = "{digest}"')
    assert (m.workload.path, m.workload.digest, m.workload.name) == (None, digest, digest)


def test_inline_and_dotted_forms_are_equivalent():
    a = parse('workload = "a.wasm"\nlimits = { memory = 8, cpu_time = 1 }\nenv.A = "1"')
    b = parse('workload = "a.wasm"\nenv = { A = "1" }\n[limits]\nmemory = 8\ncpu_time = 1')
    c = parse('workload = "a.wasm"\ndir = [{ host = "d", guest = "/d" }]')
    assert a == b
    assert c.dir == (Dir(BASE / "d", "/d"),)


ERRORS = [
    # (manifest text, expected message; the file is called Motte.toml here)
    ("", "Motte.toml: missing required key 'workload'"),
    (
        "workload = 3",
        "Motte.toml:1: workload: expected a path to a .wasm file or a sha256: "
        "digest, got an integer 3",
    ),
    ('workload = ""', "Motte.toml:1: workload: is empty"),
    (
        'workload = "sha256:abc"',
        "Motte.toml:1: workload: a sha256 digest has 64 hex digits, 'sha256:abc' has 3",
    ),
    (
        'workload = "a.wasm"\nlimit = 3',
        "Motte.toml:2: limit: unknown key (known here: args, connect, "
        "dir, env, limits, listen, secret, stderr, stdin, stdout, steward, volume, workload)",
    ),
    (
        'workload = "a.wasm"\nargs = "x"',
        "Motte.toml:2: args: expected an array of strings, got a string 'x'",
    ),
    (
        'workload = "a.wasm"\nargs = ["a",\n  2]',
        "Motte.toml:3: args[1]: expected a string, got an integer 2",
    ),
    (
        'workload = "a.wasm"\n[env]\nA = 1',
        'Motte.toml:3: env.A: expected a string or { host = "NAME" }, got an integer 1',
    ),
    (
        'workload = "a.wasm"\nenv = { "A=B" = "x" }',
        "Motte.toml:2: env.A=B: invalid environment variable name 'A=B': empty or contains '='",
    ),
    (
        'workload = "a.wasm"\n\n[limits]\nmemory = "lots"',
        "Motte.toml:4: limits.memory: expected a whole number of MiB, got a string 'lots'",
    ),
    (
        'workload = "a.wasm"\n[limits]\nmemory = 1.5',
        "Motte.toml:3: limits.memory: expected a whole number of MiB, got a number 1.5",
    ),
    (
        'workload = "a.wasm"\n[limits]\nmemory = true',
        "Motte.toml:3: limits.memory: expected a whole number of MiB, got a boolean True",
    ),
    (
        'workload = "a.wasm"\n[limits]\nmemory = 5000',
        "Motte.toml:3: limits.memory: must be from 1 to 4096 MiB, got 5000",
    ),
    (
        'workload = "a.wasm"\n[limits]\ncpu_time = 0',
        "Motte.toml:3: limits.cpu_time: must be more than 0 and at most 604800 s, got 0",
    ),
    (
        'workload = "a.wasm"\n[limits]\nwall_time = nan',
        "Motte.toml:3: limits.wall_time: must be more than 0 and at most 604800 s, got nan",
    ),
    (
        'workload = "a.wasm"\n[limits]\nstack = 1',
        "Motte.toml:3: limits.stack: unknown key (known here: connection_bytes, "
        "connection_time, connections, connections_total, cpu_time, instances, memories, "
        "memory, output, table_elements, tables, wall_time)",
    ),
    (
        'workload = "a.wasm"\nstdout = "inhert"',
        'Motte.toml:2: stdout: expected "inherit", "null" '
        "or { file = \"PATH\" }, got a string 'inhert'",
    ),
    (
        'workload = "a.wasm"\nstdin = { path = "x" }',
        "Motte.toml:2: stdin.path: unknown key (known here: file)",
    ),
    (
        'workload = "a.wasm"\n[[dir]]\nguest = "/d"',
        "Motte.toml:2: dir[0]: missing required key 'host'",
    ),
    (
        'workload = "a.wasm"\n[[dir]]\nhost = "d"\nguest = "d"',
        "Motte.toml:4: dir[0].guest: guest path 'd' must be absolute (start with '/')",
    ),
    (
        'workload = "a.wasm"\n[[dir]]\nhost = "d"\nguest = "/a/../b"',
        "Motte.toml:4: dir[0].guest: "
        "guest path '/a/../b' must be normalised (no '.', '..', '//' or trailing '/')",
    ),
    (
        'workload = "a.wasm"\n[[dir]]\nhost = "d"\nguest = "/d"\nwritable = "yes"',
        "Motte.toml:5: dir[0].writable: expected true or false, got a string 'yes'",
    ),
    (
        'workload = "a.wasm"\n[[dir]]\nhost = "d"\nguest = "/d"\n[[dir]]\nhost = "e"\nguest = "/d"',
        "Motte.toml:7: dir[1].guest: guest path /d is already granted by Motte.toml:2",
    ),
    (
        'workload = "a.wasm"\n[[dir]]\nhost = "d"\nguest = "/d"\nmode = "rw"',
        "Motte.toml:5: dir[0].mode: unknown key (known here: guest, host, name, writable)",
    ),
    (
        'workload = "a.wasm"\ndir = { host = "d" }',
        "Motte.toml:2: dir: expected an array of tables ([[dir]]), got a table",
    ),
    (
        'workload = "a.wasm"\n[[listen]]\nname = "w"\nport = 0\nprotocol = "http"',
        "Motte.toml:4: listen[0].port: expected a port from 1 to 65535, got an integer 0",
    ),
    (
        'workload = "a.wasm"\n[[listen]]\nname = "w"\nport = 80\nprotocol = "udp"',
        'Motte.toml:5: listen[0].protocol: expected "http" or "tcp", got a string \'udp\'',
    ),
    (
        'workload = "a.wasm"\n[[listen]]\nname = "w"\nport = 80',
        "Motte.toml:2: listen[0]: missing required key 'protocol'",
    ),
    (
        'workload = "a.wasm"\n[[listen]]\nname = "a b"\nport = 80\nprotocol = "tcp"',
        "Motte.toml:3: listen[0].name: 'a b': use 1 to 63 letters, digits, '-' or '_'",
    ),
    (
        'workload = "a.wasm"\n[[listen]]\nname = "w"\nport = 80\nprotocol = "tcp"\ntls = 1',
        "Motte.toml:6: listen[0].tls: expected true or false, got an integer 1",
    ),
    (
        'workload = "a.wasm"\n[[listen]]\nname = "w"\nport = 80\nprotocol = "tcp"\n'
        '[[listen]]\nname = "v"\nport = 80\nprotocol = "http"',
        "Motte.toml:8: listen[1].port: port 80 is already used by listener 'w'",
    ),
    (
        'workload = "a.wasm"\nsteward = "http://s.example"',
        "Motte.toml:2: steward: 'http://s.example' must be an https:// URL with a host",
    ),
    (
        'workload = "a.wasm"\nsteward = "https://u:p@s.example"',
        "Motte.toml:2: steward: must not carry credentials (user:password@)",
    ),
    (
        'workload = "a.wasm"\nsteward = "https://s.example:99999"',
        "Motte.toml:2: steward: not a URL: Port out of range 0-65535",
    ),
    (
        'workload = "a.wasm"\nargs = [',
        "Motte.toml:2: invalid TOML: Invalid value (at the end of the file)",
    ),
    (
        'workload = "a.wasm"\nargs = ["x"]\nargs = ["y"]\nenv = {}\n',
        "Motte.toml:3: invalid TOML: Cannot overwrite a value (column 13)",
    ),
    (
        'workload = "a.wasm"\n[limits]\nmemory = 1\n[limits]',
        "Motte.toml:4: invalid TOML: Cannot declare ('limits',) twice (column 8)",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=[m[:40] for _, m in ERRORS])
def test_errors_name_file_line_and_key(text, message):
    with pytest.raises(ManifestError) as e:
        parse(text)
    assert str(e.value) == message
    assert "\n" not in str(e.value)


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ManifestError) as e:
        parse('workload = "a.wasm"\n[limits]\ncpu = 3')
    assert e.value.hint is None  # nothing close enough
    with pytest.raises(ManifestError) as e:
        parse('workload = "a.wasm"\nenviron = {}\n')
    assert e.value.hint == "did you mean 'env'?"
    with pytest.raises(ManifestError) as e:
        parse('workload = "a.wasm"\nlimit = {}\n')
    assert e.value.hint == "did you mean 'limits'?"


def test_normalised_guest_path_hint():
    with pytest.raises(ManifestError) as e:
        parse('workload = "a.wasm"\n[[dir]]\nhost = "d"\nguest = "/d/"')
    assert e.value.hint == "write '/d'"


def test_manifest_error_is_a_config_error():
    assert issubclass(ManifestError, ConfigError)


# -- files --------------------------------------------------------------------------------------


def test_load_names_the_file_as_given_and_resolves_paths_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Motte.toml").write_text('workload = "x.wasm"\n[limits]\nmemory = 0\n')
    with pytest.raises(ManifestError) as e:
        load_manifest("app/Motte.toml")
    assert str(e.value) == ("app/Motte.toml:3: limits.memory: must be from 1 to 4096 MiB, got 0")
    (tmp_path / "app" / "Motte.toml").write_text('workload = "x.wasm"\n')
    m = load_manifest("app/Motte.toml")
    assert m.workload.path == tmp_path / "app" / "x.wasm"
    assert m.source == tmp_path / "app" / "Motte.toml"


def test_load_refuses_missing_large_and_binary_files(tmp_path):
    with pytest.raises(NotFoundError, match="no such manifest"):
        load_manifest(tmp_path / "Motte.toml")
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (1024 * 1024 + 1))
    with pytest.raises(ManifestError, match="larger than 1024 KiB"):
        load_manifest(big)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'workload = "a"\n\xff\xfe')
    with pytest.raises(ManifestError, match=r"bin.toml:2: not UTF-8 text \(byte 15\)"):
        load_manifest(binary)


def test_resolve_target_recognises_what_it_is_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mod.bin").write_bytes(b"\0asm\x01\0\0\0")
    assert resolve_target("mod.bin").workload.path == tmp_path / "mod.bin"
    assert resolve_target("mod.bin").source is None
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "Motte.toml").write_text('workload = "m.wasm"\n')
    assert resolve_target("d").workload.path == tmp_path / "d" / "m.wasm"
    assert resolve_target("d/Motte.toml").workload.path == tmp_path / "d" / "m.wasm"
    digest = "sha256:" + "0" * 64
    assert resolve_target(digest).workload.digest == digest


@pytest.mark.parametrize(
    ("setup", "target", "error", "message"),
    [
        (None, "none.wasm", NotFoundError, "none.wasm: no such file"),
        ("dir", "empty", NotFoundError, "empty: a directory without a Motte.toml"),
        ("text.wasm", "text.wasm", ManifestError, "not a WebAssembly binary"),
        ("x.wat", "x.wat", ManifestError, "WebAssembly text is not run directly"),
        (None, "sha256:xyz", ManifestError, "a sha256 digest has 64 hex digits"),
    ],
)
def test_resolve_target_errors(tmp_path, monkeypatch, setup, target, error, message):
    monkeypatch.chdir(tmp_path)
    if setup == "dir":
        (tmp_path / target).mkdir()
    elif setup:
        (tmp_path / setup).write_text("(module)")
    with pytest.raises(error, match=message.replace("(", r"\(")):
        resolve_target(target)


# -- the command line's view ---------------------------------------------------------------------


def test_bare_module_gets_the_empty_grant(tmp_path):
    m = manifest_for_module(tmp_path / "m.wasm")
    assert m.args == () and dict(m.env) == {} and m.dir == () and m.listen == ()
    assert m.limits == Limits()
    assert m.workload.name == "m.wasm"


def test_overrides_replace_args_merge_env_add_dirs_and_replace_limits():
    m = parse(
        'workload = "a.wasm"\nargs = ["x"]\nenv = { A = "1", B = "2" }\n'
        '[[dir]]\nhost = "d"\nguest = "/d"\n[limits]\nmemory = 8\ncpu_time = 1'
    )
    o = m.with_overrides(
        args=("y",),
        env={"B": "3", "C": "4"},
        dirs=(dir_from_flag("/e:/e:writable"),),
        cpu_time=5,
    )
    assert o.args == ("y",)
    assert dict(o.env) == {"A": "1", "B": "3", "C": "4"}
    assert o.dir == (Dir(BASE / "d", "/d"), Dir(Path("/e"), "/e", writable=True))
    assert o.limits == Limits(memory=8, cpu_time=5, wall_time=300)
    assert m.with_overrides().args == ("x",)  # no -- keeps the manifest's arguments


def test_a_flag_cannot_grant_a_guest_path_twice():
    m = parse('workload = "a.wasm"\n[[dir]]\nhost = "d"\nguest = "/d"')
    with pytest.raises(ConfigError) as e:
        m.with_overrides(dirs=(dir_from_flag("other:/d"),))
    assert str(e.value) == "--dir other:/d: guest path /d is already granted by Motte.toml:2"


def test_dir_flag_forms():
    assert dir_from_flag("data:/data") == Dir(Path(os.getcwd()) / "data", "/data")
    assert dir_from_flag("/tmp/x:/x:writable") == Dir(Path("/tmp/x"), "/x", writable=True)
    for bad in ("data", "data:/x:rw", ":/x", "a:b:c:d"):
        with pytest.raises(UsageError, match="expected HOST:GUEST or HOST:GUEST:writable"):
            dir_from_flag(bad)
    with pytest.raises(UsageError, match=r"--dir 'd:x': guest path 'x' must be absolute"):
        dir_from_flag("d:x")


def test_env_flag_forms():
    assert env_from_flag("A=b=c") == ("A", "b=c")
    assert env_from_flag("A=") == ("A", "")
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        env_from_flag("A")
    with pytest.raises(UsageError, match="invalid environment variable name ''"):
        env_from_flag("=x")


def test_limit_flags_use_the_manifest_rules():
    assert limit_from_flag("--memory", 64) == 64
    assert limit_from_flag("--cpu-time", 0.5) == 0.5
    with pytest.raises(UsageError, match="--memory 0: must be from 1 to 4096 MiB, got 0"):
        limit_from_flag("--memory", 0)
    with pytest.raises(UsageError, match="--wall-time -1: must be more than 0"):
        limit_from_flag("--wall-time", -1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[secret]]\nname = "db"', "secret[0]: give file = "),
        ('[[secret]]\nname = "db"\nfile = "/a"\nenv = "A"', "exactly one"),
        ('[[secret]]\nname = "db"\nfile = "run/db"', "must be absolute"),
        ('[[secret]]\nname = "DB"\nenv = "A"', "is not a secret name"),
        ('[[secret]]\nname = "db"\nenv = "A"\nversion = 0', "a version number from 1"),
        ('[[secret]]\nname = "db"\nenv = "A"\n[[secret]]\nname = "x"\nenv = "A"', "already goes"),
        ('[[secret]]\nname = "db"\nenv = "A"\nwhat = 1', "unknown key"),
    ],
)
def test_secret_entries_are_checked(text: str, message: str) -> None:
    from motte.manifest import ManifestError, parse_manifest

    with pytest.raises(ManifestError) as e:
        parse_manifest(f'workload = "a.wasm"\n{text}\n', base_dir=Path("/w"), name="Motte.toml")
    assert message in str(e.value)


def test_secret_entries_name_where_each_goes() -> None:
    from motte.manifest import Secret, parse_manifest

    m = parse_manifest(
        'workload = "a.wasm"\n[[secret]]\nname = "db"\nfile = "/run/secrets/db"\n'
        '[[secret]]\nname = "db"\nenv = "DB"\n[[secret]]\nname = "t"\nenv = "T"\nversion = 2\n',
        base_dir=Path("/w"),
        name="Motte.toml",
    )
    assert m.secret == (
        Secret("db", file="/run/secrets/db"),
        Secret("db", env="DB"),
        Secret("t", env="T", version=2),
    )
