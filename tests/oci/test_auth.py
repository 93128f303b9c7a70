import base64
import json

import pytest

from motte.oci import AuthError
from motte.oci._auth import credentials_path, find_credentials, parse_challenge

REG = "registry.example.com:5000"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("MOTTE_REGISTRY_TOKEN", "MOTTE_REGISTRY_USER", "MOTTE_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def _write_creds(text: str, mode: int = 0o600):
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_nothing_configured_means_no_credentials():
    assert find_credentials(REG) is None


def test_environment_comes_first(monkeypatch):
    _write_creds(f'[registries."{REG}"]\nusername = "file"\npassword = "p"\n')
    monkeypatch.setenv("MOTTE_REGISTRY_USER", "env")
    monkeypatch.setenv("MOTTE_REGISTRY_PASSWORD", "secret")
    creds = find_credentials(REG)
    assert (creds.username, creds.password, creds.source) == (
        "env",
        "secret",
        "MOTTE_REGISTRY_USER",
    )
    monkeypatch.setenv("MOTTE_REGISTRY_TOKEN", "tok")
    assert find_credentials(REG).token == "tok"


def test_half_the_basic_pair_is_an_error(monkeypatch):
    monkeypatch.setenv("MOTTE_REGISTRY_USER", "env")
    with pytest.raises(AuthError, match="MOTTE_REGISTRY_PASSWORD is not set"):
        find_credentials(REG)


def test_credentials_file(monkeypatch):
    path = _write_creds(
        f'[registries."{REG}"]\nusername = "u"\npassword = "hunter2-secret"\n'
        '[registries."other.example"]\ntoken = "t"\n'
    )
    creds = find_credentials(REG)
    assert (creds.username, creds.password, creds.source) == ("u", "hunter2-secret", str(path))
    assert find_credentials("other.example").token == "t"
    assert find_credentials("unknown.example") is None
    assert "hunter2" not in repr(creds)  # secrets stay out of reprs and tracebacks


def test_a_credentials_file_others_can_read_is_refused():
    path = _write_creds(f'[registries."{REG}"]\nusername = "u"\npassword = "p"\n', mode=0o644)
    with pytest.raises(AuthError) as e:
        find_credentials(REG)
    assert "readable by others" in e.value.message
    assert e.value.hint == f"chmod 600 {path}"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("[registries", "not valid TOML"),
        (f'[registries."{REG}"]\nusername = "u"\n', "needs 'username' and 'password'"),
        (f'[registries."{REG}"]\nuser = "u"\npassword = "p"\n', "unknown key 'user'"),
        (f'[registries."{REG}"]\ntoken = "t"\nusername = "u"\n', "stand alone"),
    ],
)
def test_malformed_credentials_files(body, needle):
    _write_creds(body)
    with pytest.raises(AuthError, match=needle):
        find_credentials(REG)


def test_docker_config_auths(tmp_path):
    (tmp_path / "docker").mkdir()
    auth = base64.b64encode(b"dockeruser:dockerpw").decode()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {REG: {"auth": auth}}}))
    creds = find_credentials(REG)
    assert (creds.username, creds.password) == ("dockeruser", "dockerpw")
    assert find_credentials("elsewhere.example") is None


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        (
            'Bearer realm="https://auth.example/token",service="registry",'
            'scope="repository:acme/hello:pull,push"',
            "bearer",
            {
                "realm": "https://auth.example/token",
                "service": "registry",
                "scope": "repository:acme/hello:pull,push",
            },
        ),
        ('Basic realm="basic-realm"', "basic", {"realm": "basic-realm"}),
        (
            'Bearer realm="x", error="insufficient_scope"',
            "bearer",
            {"realm": "x", "error": "insufficient_scope"},
        ),
        ("Bearer realm=unquoted", "bearer", {"realm": "unquoted"}),
        ("", "", {}),
    ],
)
def test_parse_challenge(header, scheme, params):
    assert parse_challenge(header) == (scheme, params)
