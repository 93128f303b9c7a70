"""The doc-test's reading of Markdown (tests/mdblocks.py): what runs, what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mdblocks import DocError, check_convention, read_blocks


def blocks(tmp_path: Path, text: str):
    page = tmp_path / "page.md"
    page.write_text(text)
    return read_blocks(page)


def test_a_console_transcript_runs_its_prompted_lines_with_continuations(tmp_path):
    [b] = blocks(
        tmp_path,
        "```console\n$ motte key new alice\ncreated ed25519 key alice\n"
        "$ motte sign x \\\n    --key alice\nsigned\n```\n",
    )
    assert b.runs
    assert b.script == "motte key new alice\nmotte sign x \\\n    --key alice\n"


def test_a_block_in_a_list_item_loses_its_fence_indentation(tmp_path):
    """A list item's transcript runs its prompted lines, and a heredoc in it ends, as pasted."""
    a, b = blocks(
        tmp_path,
        "- a package:\n\n  <!-- doctest: exit=125 -->\n  ```console\n  $ motte run acme/x:1.0\n"
        "  motte: error: refused\n  ```\n\n  ```sh\n  cat > m.toml <<'EOF'\n"
        "  workload = 'x'\n    nested = 1\n  EOF\n  ```\n",
    )
    assert (a.exit, a.script) == (125, "motte run acme/x:1.0\n")
    assert b.script == "cat > m.toml <<'EOF'\nworkload = 'x'\n  nested = 1\nEOF\n"


def test_directives_set_how_a_block_runs(tmp_path):
    a, b, c = blocks(
        tmp_path,
        "<!-- doctest: exit=1, timeout=5 -->\n```sh\nfalse\n```\n\n"
        "<!-- doctest: background, ready=tcp:127.0.0.1:1 -->\n```sh\nserve\n```\n\n"
        "<!-- doctest: illustrative: needs hardware -->\n```sh\nmotte attest verify r\n```\n",
    )
    assert (a.exit, a.timeout, a.runs) == (1, 5.0, True)
    assert (b.background, b.ready) == (True, "tcp:127.0.0.1:1")
    assert (c.illustrative, c.runs) == ("needs hardware", False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- doctest: illustrative -->\n```sh\nx\n```\n", "needs a reason"),
        ("<!-- doctest: background -->\n```sh\nx\n```\n", "needs ready="),
        ("<!-- doctest: exit=one -->\n```sh\nx\n```\n", "unknown doctest option"),
        ("<!-- doctest: exit=1 -->\n\nprose\n```sh\nx\n```\n", "right before its block"),
    ],
)
def test_a_malformed_directive_names_its_line(tmp_path, text, message):
    with pytest.raises(DocError, match=message) as e:
        blocks(tmp_path, text)
    assert str(e.value).startswith("page.md:1:")


def test_a_command_the_test_cannot_see_is_a_problem(tmp_path):
    found = blocks(
        tmp_path,
        "Run it:\n\n    motte run examples/hello\n\n```\nmake demo\n```\n\n"
        "```toml\nworkload = 'x'\n```\n",
    )
    problems = check_convention(found)
    assert [p.split(":")[1] for p in problems] == ["3", "5"]
