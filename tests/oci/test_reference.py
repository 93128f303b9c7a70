import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motte.oci import InsecureTransportError, ReferenceSyntaxError, check_transport, parse_reference

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "scheme", "repository", "tag", "digest"),
    [
        ("acme/hello", None, None, "acme/hello", "latest", None),
        ("acme/hello:1.0", None, None, "acme/hello", "1.0", None),
        (f"acme/hello@{D}", None, None, "acme/hello", None, D),
        (f"acme/hello:1.0@{D}", None, None, "acme/hello", "1.0", D),
        ("acme/tools/hello:v2", None, None, "acme/tools/hello", "v2", None),
        (
            "registry.example.com/acme/hello:1",
            "registry.example.com",
            "https",
            "acme/hello",
            "1",
            None,
        ),
        ("localhost:5000/acme/hello", "localhost:5000", "https", "acme/hello", "latest", None),
        ("localhost/acme/hello", "localhost", "https", "acme/hello", "latest", None),
        ("http://127.0.0.1:5000/acme/hello:1", "127.0.0.1:5000", "http", "acme/hello", "1", None),
        ("https://[::1]:5000/acme/hello", "[::1]:5000", "https", "acme/hello", "latest", None),
    ],
)
def test_parse(text, registry, scheme, repository, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry, ref.scheme, ref.repository, ref.tag, ref.digest) == (
        registry,
        scheme,
        repository,
        tag,
        digest,
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("hello", "needs a namespace"),
        ("example.com/hello", "needs a namespace"),
        ("Acme/hello", "lowercase"),
        ("acme/hello:", "tag"),
        ("acme/hello@sha256:abc", "not a sha256 digest"),
        ("acme/hello@sha512:" + "a" * 128, "not a sha256 digest"),
        ("ftp://host/acme/hello", "scheme"),
        ("acme//hello", "path component"),
        ("", "empty"),
        ("a.b/hello", "needs a namespace"),
        ("reg.example.com/a.b/hello", "would read as a registry"),
    ],
)
def test_parse_errors_name_the_part(text, needle):
    with pytest.raises(ReferenceSyntaxError) as e:
        parse_reference(text)
    assert needle in e.value.message
    assert repr(text) in e.value.message


def test_plain_http_only_to_loopback_unless_named():
    check_transport(parse_reference("http://127.0.0.1:5000/a/b"))
    check_transport(parse_reference("http://localhost:5000/a/b"))
    check_transport(parse_reference("http://[::1]:5000/a/b"))
    remote = parse_reference("http://registry.example.com/a/b")
    with pytest.raises(InsecureTransportError) as e:
        check_transport(remote)
    assert "--allow-insecure-http" in (e.value.hint or "")
    check_transport(remote, allow_insecure_http=True)


alnum = st.text("abcz019", min_size=1, max_size=4)
component = st.builds(
    lambda a, sep, b: a + sep + b if sep else a,
    alnum,
    st.sampled_from(["", ".", "-", "_", "__"]),
    alnum,
)
tags = st.builds(
    lambda a, b: a + b, st.text("aZ9_", min_size=1, max_size=1), st.text("aZ9._-", max_size=10)
)
hexdigest = st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())


@settings(max_examples=200, deadline=None)
@given(
    ns=st.lists(component.filter(lambda c: "." not in c), min_size=1, max_size=3),
    name=component,
    tag=st.one_of(st.none(), tags),
    digest=st.one_of(st.none(), hexdigest),
    registry=st.sampled_from([None, "registry.example.com", "http://127.0.0.1:5000"]),
)
def test_str_round_trips(ns, name, tag, digest, registry):
    text = "/".join(ns) + "/" + name
    if tag:
        text += ":" + tag
    if digest:
        text += "@" + digest
    if registry:
        text = registry + "/" + text
    ref = parse_reference(text, default_tag=None)
    assert parse_reference(str(ref), default_tag=None) == ref
