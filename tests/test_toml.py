"""The TOML key locator finds the line of every key, whatever the TOML style, and is never
fooled by strings or comments that look like keys."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motte._toml import format_path, key_lines, line_of

DOC = '''\
# a comment with key = "value"
workload = "a.wasm"   # trailing comment
args = [
  "x", # "y = 1"
  """multi
line = "not a key"
""", 'lit#eral',
]
env = { A = "1", "B C" = "[x]" }
limits.memory = 8

[[dir]]
host = "d"
guest = "/d"

[[dir]]
host = "e"
  guest = "/e"

[listen."odd name"]
port = 1
'''


def test_each_style_of_key_has_its_line():
    lines = key_lines(DOC)
    assert lines[("workload",)] == 2
    assert lines[("args",)] == 3
    assert lines[("args", 0)] == 4
    assert lines[("args", 1)] == 5
    assert lines[("args", 2)] == 7
    assert lines[("env", "A")] == 9
    assert lines[("env", "B C")] == 9
    assert lines[("limits", "memory")] == 10
    assert lines[("dir",)] == 12
    assert lines[("dir", 0)] == 12
    assert lines[("dir", 0, "guest")] == 14
    assert lines[("dir", 1)] == 16
    assert lines[("dir", 1, "guest")] == 18
    assert lines[("listen", "odd name", "port")] == 21
    # Text inside strings and comments never becomes a key.
    assert ("line",) not in lines
    assert ("key",) not in lines


def test_array_of_inline_tables():
    text = 'dir = [\n  { host = "a", guest = "/a" },\n\n  { host = "b", guest = "/b" },\n]\n'
    tomllib.loads(text)
    lines = key_lines(text)
    assert lines[("dir", 0)] == lines[("dir", 0, "host")] == 2
    assert lines[("dir", 1, "host")] == lines[("dir", 1, "guest")] == 4


def test_line_of_falls_back_to_the_enclosing_key():
    lines = key_lines("[limits]\nmemory = 1\n")
    assert line_of(lines, ("limits", "cpu_time")) == 1
    assert line_of(lines, ("nothing",)) is None


def test_format_path():
    assert format_path(("dir", 1, "host")) == "dir[1].host"
    assert format_path(("limits",)) == "limits"
    assert format_path(()) == ""


# -- property: any document rendered in any style --------------------------------------------

KEYS = st.text(alphabet="abcdefgh_-", min_size=1, max_size=6)
STRINGS = st.text(alphabet="ab #=[]{}.,\"'\\", max_size=12)


def _basic(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


SCALARS = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    STRINGS.map(_basic),
    STRINGS.filter(lambda s: "'" not in s).map(lambda s: f"'{s}'"),
    STRINGS.map(lambda s: '"""\n' + s.replace("\\", "\\\\").replace('"', "'") + '\nk = 1"""'),
    st.just("1979-05-27T07:32:00Z"),
)


@st.composite
def documents(draw):
    """A TOML document and the line each leaf key was written on."""
    out: list[str] = []
    expected: dict[tuple, int] = {}

    def emit(text: str) -> int:
        """Append text (maybe several lines); return the line it starts on."""
        start = sum(x.count("\n") + 1 for x in out) + 1
        out.append(text)
        return start

    def value() -> str:
        kind = draw(st.sampled_from(["scalar", "scalar", "array", "inline"]))
        if kind == "scalar":
            return draw(SCALARS)
        if kind == "array":
            return "[" + ", ".join(draw(st.lists(SCALARS, max_size=3))) + "]"
        keys = draw(st.lists(KEYS, unique=True, max_size=3))
        return "{ " + ", ".join(f"{k} = {draw(SCALARS)}" for k in keys) + " }"

    def pairs(prefix: tuple) -> None:
        for key in draw(st.lists(KEYS, unique=True, max_size=4)):
            if draw(st.booleans()):
                emit(f"# {key} = 0")
            expected[(*prefix, key)] = emit(f"{key} = {value()}")

    pairs(())
    used = set(expected)
    for name in draw(st.lists(KEYS, unique=True, max_size=3)):
        if (name,) in used:
            continue
        if draw(st.booleans()):
            emit(f"[{name}]")
            pairs((name,))
        else:
            for i in range(draw(st.integers(1, 3))):
                emit(f"[[{name}]]")
                pairs((name, i))
    return "\n".join(out) + "\n", expected


@settings(max_examples=200, deadline=None)
@given(documents())
def test_property_every_key_is_found_on_its_line(doc):
    text, expected = doc
    tomllib.loads(text)  # the generator writes valid TOML
    lines = key_lines(text)
    src = text.splitlines()
    for path, line in expected.items():
        assert lines[path] == line, (path, text)
        assert src[line - 1].lstrip().startswith(str(path[-1]))


# -- the strict table reader shared by every configuration file --------------------------


def _table(text):
    from motte._toml import parse_table
    from motte.errors import ConfigError

    return parse_table(text, source="c.toml", error=ConfigError)


def test_a_table_refuses_a_key_nobody_read_and_names_file_line_and_key():
    from motte.errors import ConfigError

    top = _table('name = "x"\n[limits]\nmemory = 5\nmemroy = 6\n')
    assert top.str("name") == "x"
    limits = top.table("limits")
    assert limits is not None and limits.num("memory") == 5.0
    top.done()
    with pytest.raises(ConfigError) as e:
        limits.done()
    assert e.value.message == "c.toml:4: limits.memroy: unknown key (known here: memory)"
    assert e.value.hint == "did you mean 'memory'?"


def test_check_keys_takes_a_schema_and_an_explicit_hint():
    from motte._toml import Invalid, check_keys
    from motte.errors import ConfigError

    top = _table("[empty]\nx = 1\n")
    with pytest.raises(ConfigError) as e:
        top.check_keys({"other"}, hint="tables: [empty]")
    assert e.value.message == "c.toml:1: empty: unknown key (known here: other)"
    assert e.value.hint == "tables: [empty]"
    with pytest.raises(Invalid) as inv:
        check_keys({"x": 1}, set(), ("empty",))
    assert inv.value.path == ("empty", "x")
    assert inv.value.reason == "unknown key (this table takes no keys)"
    assert inv.value.hint is None


def test_a_table_checks_types_where_they_are():
    from motte.errors import ConfigError

    top = _table('n = "3"\nflag = 1\n[[step]]\nat = -1\n')
    with pytest.raises(ConfigError, match=r"^c.toml:1: n: must be a number, not a string$"):
        top.num("n")
    with pytest.raises(ConfigError, match=r"^c.toml:2: flag: must be true or false"):
        top.bool("flag", False)
    step = top.sub(top.raw("step")[0], ("step", 0))
    with pytest.raises(ConfigError, match=r"^c.toml:4: step\[0\].at: must be at least 0"):
        step.num("at")
