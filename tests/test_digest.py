import pytest

from motte._digest import check_digest, digest_hex, file_digest, is_digest, sha256_digest

EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_one_digest_for_bytes_and_files(tmp_path):
    p = tmp_path / "m.wasm"
    p.write_bytes(b"")
    assert sha256_digest(b"") == file_digest(p) == EMPTY
    assert digest_hex(EMPTY) == EMPTY.removeprefix("sha256:")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("e3b0", "expected sha256:<64 hex digits>"),
        ("sha512:" + "0" * 128, "only sha256 is accepted"),
        ("sha256:abc", "has 3"),
        ("sha256:" + "A" * 64, "lowercase hex"),
    ],
)
def test_check_digest_says_why(text, why):
    assert not is_digest(text)
    with pytest.raises(ValueError, match=why):
        check_digest(text)


def test_is_digest_refuses_what_is_not_text():
    assert is_digest(EMPTY) and check_digest(EMPTY) == EMPTY
    assert not is_digest(None) and not is_digest(b"sha256:")
