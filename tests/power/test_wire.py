"""NUT line syntax: quoting, escaping, splitting, the bounded line buffer."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motte.power.nut._wire import LineBuffer, quote, split_words, word

printable = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f"),
    max_size=40,
)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('VAR ups ups.status "OL"', ("VAR", "ups", "ups.status", "OL")),
        ('VAR ups ups.mfr "Sim \\"q\\" \\\\ x"', ("VAR", "ups", "ups.mfr", 'Sim "q" \\ x')),
        ('GET  VAR   "dummy" "ups.status"', ("GET", "VAR", "dummy", "ups.status")),
        ('ENUM ups v ""', ("ENUM", "ups", "v", "")),
        ('a"b c"d', ("ab cd",)),  # a quote toggles quoting inside a word, as parseconf does
        ("a\\ b", ("a b",)),  # a backslash escapes outside quotes too
        ("", ()),
        ("\t OK \t", ("OK",)),
    ],
)
def test_split_words(line, words):
    assert split_words(line).words == words


@pytest.mark.parametrize("line", ['VAR ups x "open', "VAR ups x \\"])
def test_split_words_refuses_broken_quoting(line):
    with pytest.raises(ValueError):
        split_words(line)


@given(printable)
def test_quote_round_trips_any_printable_value(value):
    assert split_words(quote(value)).words == (value,)
    assert split_words(f"SET VAR ups v {word(value)}").words[-1:] == ((value,) if value else ("",))


@pytest.mark.parametrize("bad", ["a\nLOGOUT", "x\r", "nul\x00"])
def test_values_that_would_break_the_line_are_refused(bad):
    with pytest.raises(ValueError, match="control character"):
        quote(bad)


def test_word_quotes_only_when_needed():
    assert word("ups.status") == "ups.status"
    assert word("two words") == '"two words"'
    assert word("") == '""'


def test_line_buffer_splits_lf_and_crlf_and_keeps_partial_lines():
    buf = LineBuffer(max_line=100)
    buf.feed(b"OK\r\nVAR a b ")
    assert buf.pop_line() == "OK"
    assert buf.pop_line() is None
    buf.feed(b'"c"\n')
    assert buf.pop_line() == 'VAR a b "c"'
    assert buf.pop_line() is None
    assert len(buf) == 0


def test_line_buffer_is_bounded_without_a_newline():
    buf = LineBuffer(max_line=16)
    buf.feed(b"x" * 16)
    assert buf.pop_line() is None
    buf.feed(b"x")
    with pytest.raises(ValueError, match="longer than 16 bytes"):
        buf.pop_line()


def test_line_buffer_refuses_an_over_long_complete_line():
    buf = LineBuffer(max_line=4)
    buf.feed(b"123456\n")
    with pytest.raises(ValueError, match="longer than 4"):
        buf.pop_line()


def test_line_buffer_survives_bytes_that_are_not_utf8():
    buf = LineBuffer(max_line=100)
    buf.feed(b"OK \xff\xfe\n")
    assert buf.pop_line().startswith("OK ")


def reference_split(text):
    """NUT's parseconf rules, one character at a time: the specification the fast path meets."""
    words, current, in_word, in_quotes, escaped = [], [], False, False, False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = in_word = True
        elif ch == '"':
            in_quotes, in_word = not in_quotes, True
        elif ch in " \t" and not in_quotes:
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(ch)
            in_word = True
    if escaped or in_quotes:
        raise ValueError("broken")
    if in_word:
        words.append("".join(current))
    return tuple(words)


@given(st.text(alphabet=st.sampled_from(list('ab "\\\t.é')), max_size=30))
def test_the_fast_splitter_follows_parseconf_character_by_character(text):
    try:
        expected = reference_split(text)
    except ValueError:
        with pytest.raises(ValueError):
            split_words(text)
        return
    assert split_words(text).words == expected


@pytest.mark.parametrize(
    "line",
    ["a" * 8000 + '"', 'x "' + "\\a" * 4000, " ".join(["w"] * 4000) + " \\", '"' * 8001],
)
def test_hostile_lines_fail_without_backtracking_forever(line):
    """Linear-time matching: these would hang a regex with nested, overlapping repeats."""
    with pytest.raises(ValueError):
        split_words(line)
