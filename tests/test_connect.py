"""[[connect]] in Motte.toml, its grants (flags and the host policy), and the rules that
decide what a destination may reach: no sockets here (tests/integration/test_outbound.py
drives real peers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from motte.manifest import (
    GrantError,
    GrantRefusedError,
    ManifestError,
    apply_grants,
    grants_from_flags,
    load_host_policy,
    parse_manifest,
)

HEAD = 'workload = "a.wasm"\n'
VENDOR = '[[connect]]\nname = "vendor"\nhost = "api.vendor.example"\nport = 443\n'


def parse(text: str):
    return parse_manifest(HEAD + text, base_dir=Path("/app"), name="Motte.toml")


def test_a_destination_with_the_defaults():
    (c,) = parse(VENDOR).connect
    assert (c.name, c.host, c.port, c.address, c.ca) == (
        "vendor",
        "api.vendor.example",
        443,
        None,
        None,
    )
    assert c.tls is not None
    assert (c.tls.min_version, c.tls.max_version) == ("1.2", "1.3")
    assert c.tls.unsafe == ()
    assert c.server_name == "api.vendor.example"
    assert c.describe() == "api.vendor.example:443 (TLS)"


def test_every_expert_setting_is_read():
    (c,) = parse(
        VENDOR
        + """[connect.tls]
min_version = "1.3"
max_version = "1.3"
tls13_ciphers = ["TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_256_GCM_SHA384"]
groups = ["X25519", "P-384"]
alpn = ["h2", "http/1.1"]
server_name = "API.Vendor.Example"
pin_spki = "sha256:"""
        + "a" * 64
        + '"\n'
    ).connect
    t = c.tls
    assert t.tls13_ciphers == ("TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_256_GCM_SHA384")
    assert t.groups == ("X25519", "P-384")
    assert t.alpn == ("h2", "http/1.1")
    assert c.server_name == "api.vendor.example"
    assert t.pin_spki == ("sha256:" + "a" * 64,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[connect]]\nname = "vendor"\nport = 443\n',
            "Motte.toml:2: connect[0]: missing required key 'host'",
        ),
        (
            '[[connect]]\nname = "a b"\nhost = "x.example"\nport = 1\n',
            "Motte.toml:3: connect[0].name: 'a b': use 1 to 63 letters, digits, '-' or '_'",
        ),
        (
            '[[connect]]\nname = "v"\nhost = "http://x.example"\nport = 1\n',
            "Motte.toml:4: connect[0].host: 'http://x.example' is not a host name or IP address",
        ),
        (
            '[[connect]]\nname = "v"\nhost = "x.example"\nport = 70000\n',
            "Motte.toml:5: connect[0].port: expected a port from 1 to 65535, got an integer 70000",
        ),
        (
            '[[connect]]\nname = "v"\nhost = "x.example"\nport = 1\nproto = "tls"\n',
            "Motte.toml:6: connect[0].proto: unknown key (known here: host, name, port, tls)",
        ),
        (
            VENDOR + VENDOR,
            "Motte.toml:7: connect[1].name: destination name 'vendor' is already used by [0]",
        ),
        (
            VENDOR + 'tls = "yes"\n',
            "Motte.toml:6: connect[0].tls: expected true, false or a table of settings, got a "
            "string 'yes'",
        ),
        (
            VENDOR + '[connect.tls]\nmin_version = "1.1"\n',
            "Motte.toml:7: connect[0].tls.min_version: TLS 1.1 is refused: it is broken (RFC 8996)",
        ),
        (
            VENDOR + '[connect.tls]\nmax_version = "2"\n',
            'Motte.toml:7: connect[0].tls.max_version: expected "1.2" or "1.3", got a string \'2\'',
        ),
        (
            VENDOR + '[connect.tls]\nmin_version = "1.3"\nmax_version = "1.2"\n',
            "Motte.toml:8: connect[0].tls.max_version: 1.2 is older than min_version 1.3",
        ),
        (
            VENDOR + '[connect.tls]\ntls12_ciphers = ["AES128-SHA"]\n',
            "Motte.toml:7: connect[0].tls.tls12_ciphers[0]: 'AES128-SHA' is not offered: a Keep "
            "offers TLS 1.2 suites with forward secrecy and an AEAD only",
        ),
        (
            VENDOR
            + '[connect.tls]\nmin_version = "1.3"\n'
            + 'tls12_ciphers = ["ECDHE-RSA-AES128-GCM-SHA256"]\n',
            "Motte.toml:8: connect[0].tls.tls12_ciphers: is set, but min_version is 1.3",
        ),
        (
            VENDOR + '[connect.tls]\ntls13_ciphers = ["TLS_AES_128_GCM_SHA265"]\n',
            "Motte.toml:7: connect[0].tls.tls13_ciphers[0]: unknown suite 'TLS_AES_128_GCM_SHA265'",
        ),
        (
            VENDOR
            + '[connect.tls]\nmax_version = "1.2"\ntls13_ciphers = ["TLS_AES_128_GCM_SHA256"]\n',
            "Motte.toml:8: connect[0].tls.tls13_ciphers: is set, but max_version is 1.2",
        ),
        (
            VENDOR + '[connect.tls]\ngroups = ["X25519", "P-255"]\n',
            "Motte.toml:7: connect[0].tls.groups[1]: unknown group 'P-255'",
        ),
        (
            VENDOR + "[connect.tls]\ngroups = []\n",
            "Motte.toml:7: connect[0].tls.groups: is empty (leave the key out for the default)",
        ),
        (
            VENDOR + '[connect.tls]\ngroups = ["X25519", "X25519"]\n',
            "Motte.toml:7: connect[0].tls.groups[1]: 'X25519' is listed twice",
        ),
        (
            VENDOR + '[connect.tls]\nalpn = [""]\n',
            "Motte.toml:7: connect[0].tls.alpn[0]: '': a protocol name is 1 to 255 printable ASCII",
        ),
        (
            VENDOR + '[connect.tls]\nserver_name = "-bad-.example"\n',
            "Motte.toml:7: connect[0].tls.server_name: '-bad-.example' is not a server name",
        ),
        (
            VENDOR + '[connect.tls]\npin_spki = ["sha256:ABC"]\n',
            "Motte.toml:7: connect[0].tls.pin_spki[0]: 'sha256:ABC': expected sha256: and 64 "
            "lower-case hex digits",
        ),
        (
            VENDOR + "[connect.tls]\nunsafe_skip_verification = 1\n",
            "Motte.toml:7: connect[0].tls.unsafe_skip_verification: expected true or false",
        ),
        (
            VENDOR + "[connect.tls]\nverify = false\n",
            "Motte.toml:7: connect[0].tls.verify: unknown key (known here: alpn, groups, ",
        ),
    ],
)
def test_malformed_settings_are_one_line_naming_the_key(text, message):
    with pytest.raises(ManifestError) as e:
        parse(text)
    assert "\n" not in e.value.message
    assert e.value.message.startswith(message), e.value.message


def test_legacy_tls_is_read_only_when_named_unsafe():
    (c,) = parse(
        VENDOR
        + '[connect.tls]\nunsafe_legacy_tls = true\nmin_version = "1.0"\n'
        + 'tls12_ciphers = ["AES128-SHA"]\n'
    ).connect
    assert c.tls.min_version == "1.0"
    assert c.tls.unsafe == ("unsafe_legacy_tls",)


# -- grants ----------------------------------------------------------------------------------


def package(text: str, *flags: str, policy=None):
    manifest = parse_manifest(HEAD + text, base_dir=Path("/"), name="p/Motte.toml", package=True)
    return apply_grants(
        manifest,
        package="acme/app:1.0",
        flags=grants_from_flags(list(flags), Path("/work")),
        policy=policy,
    )


def test_a_package_gets_no_destination_without_a_grant():
    with pytest.raises(GrantRefusedError) as e:
        package(VENDOR)
    assert e.value.missing == (
        "connect vendor: calls api.vendor.example:443 (TLS): --grant connect:vendor",
    )


def test_a_grant_moves_the_destination_and_names_its_ca():
    granted = package(VENDOR, "connect:vendor=10.0.0.7:8443,ca=certs/vendor.pem")
    (c,) = granted.manifest.connect
    assert (c.address, c.port, c.ca) == ("10.0.0.7", 8443, Path("/work/certs/vendor.pem"))
    assert c.server_name == "api.vendor.example"  # TLS still checks the vendor's name
    assert c.loopback is False
    assert granted.granted == (
        "connect vendor = api.vendor.example via 10.0.0.7:8443 (TLS), CA /work/certs/vendor.pem",
    )


def test_a_grant_keeps_the_port_when_it_names_a_host_alone():
    (c,) = package(VENDOR, "connect:vendor=[fd00::7]").manifest.connect
    assert (c.address, c.port) == ("fd00::7", 443)
    assert c.describe() == "api.vendor.example via [fd00::7]:443 (TLS)"


LOOPBACK = '[[connect]]\nname = "db"\nhost = "127.0.0.1"\nport = 5432\n'


def test_a_packages_loopback_destination_is_granted_only_by_its_address():
    with pytest.raises(GrantRefusedError) as e:
        package(LOOPBACK, "connect:db")
    assert e.value.missing == (
        "connect db: calls this host's loopback (127.0.0.1:5432), which only the host's own "
        "grant of the address reaches: --grant connect:db=127.0.0.1:5432",
    )
    (c,) = package(LOOPBACK, "connect:db=127.0.0.1:5432").manifest.connect
    assert c.loopback is True


def test_the_link_local_metadata_address_counts_as_this_host():
    text = '[[connect]]\nname = "meta"\nhost = "169.254.169.254"\nport = 80\n'
    with pytest.raises(GrantRefusedError, match="calls this host's loopback"):
        package(text, "connect:meta")


def test_a_local_manifest_reaches_the_loopback_it_names():
    manifest = parse(LOOPBACK)
    (c,) = apply_grants(manifest, package=None).manifest.connect
    assert c.loopback is True
    (v,) = apply_grants(parse(VENDOR), package=None).manifest.connect
    assert v.loopback is False


def test_plain_text_reaches_only_loopback():
    plain = VENDOR + "tls = false\n"
    with pytest.raises(
        GrantError,
        match=r"tls = false \(PLAIN TEXT\) reaches only a loopback test peer, not api\.vendor",
    ):
        apply_grants(parse(plain), package=None)
    (c,) = apply_grants(
        parse(plain), package=None, flags=grants_from_flags(["connect:vendor=127.0.0.1:9"])
    ).manifest.connect
    assert c.tls is None and c.loopback
    assert c.describe() == "api.vendor.example via 127.0.0.1:9 (PLAIN TEXT)"


UNSAFE = VENDOR + "[connect.tls]\nunsafe_skip_verification = true\n"


def test_an_insecure_choice_needs_the_hosts_grant_too_even_for_a_local_manifest():
    with pytest.raises(GrantError) as e:
        apply_grants(parse(UNSAFE), package=None)
    assert e.value.message == (
        "Motte.toml:2: connect vendor: asks for INSECURE TLS (unsafe_skip_verification), which "
        "the host must grant too: --grant connect:vendor=unsafe_skip_verification"
    )
    flags = grants_from_flags(["connect:vendor=unsafe_skip_verification"])
    (c,) = apply_grants(parse(UNSAFE), package=None, flags=flags).manifest.connect
    assert c.unsafe == {"unsafe_skip_verification"}
    with pytest.raises(GrantRefusedError, match="asks for INSECURE TLS"):
        package(UNSAFE, "connect:vendor")


def test_an_insecure_grant_the_manifest_does_not_ask_for_is_refused():
    with pytest.raises(GrantError, match="consents to unsafe_legacy_tls, which the manifest"):
        apply_grants(
            parse(VENDOR),
            package=None,
            flags=grants_from_flags(["connect:vendor=unsafe_legacy_tls"]),
        )


def test_a_grant_for_no_destination_is_an_error():
    with pytest.raises(GrantError, match="the workload asks for no connect:other"):
        package(VENDOR, "connect:vendor", "connect:other")


def test_the_host_policy_grants_destinations(tmp_path):
    policy = tmp_path / "host-policy.toml"
    policy.write_text(
        """
[connect.vendor]
address = "10.0.0.7:8443"
ca = "/etc/motte/vendor-ca.pem"

[package."acme/app".connect.db]
address = "127.0.0.1:5432"
unsafe_legacy_tls = true
"""
    )
    loaded = load_host_policy(policy)
    grants = loaded.for_package("acme/app")
    vendor, db = grants.get("connect", "vendor"), grants.get("connect", "db")
    assert (vendor.address, vendor.port, vendor.path) == (
        "10.0.0.7",
        8443,
        Path("/etc/motte/vendor-ca.pem"),
    )
    assert db.options == {"unsafe_legacy_tls"}
    (c,) = package(VENDOR, policy=grants).manifest.connect
    assert c.address == "10.0.0.7"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[connect.vendor]\naddress = "x y"\n',
            "host-policy.toml:2: connect.vendor.address: 'x y' is not a host name",
        ),
        (
            '[connect.vendor]\nca = "rel.pem"\n',
            "host-policy.toml:2: connect.vendor.ca: must be an absolute path",
        ),
        (
            "[connect.vendor]\nverify = false\n",
            "host-policy.toml:2: connect.vendor.verify: unknown key",
        ),
    ],
)
def test_a_malformed_policy_names_file_line_and_key(tmp_path, text, message):
    policy = tmp_path / "host-policy.toml"
    policy.write_text(text)
    with pytest.raises(GrantError) as e:
        load_host_policy(policy)
    assert message in e.value.message
