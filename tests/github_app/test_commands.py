"""Commands are read from the comment's Markdown text, never from code, quotes or raw HTML."""

from __future__ import annotations

import pytest

from github_app.commands import Command, find_command


@pytest.mark.parametrize(
    "text",
    [
        "```\n@app implement\n```",
        "~~~\n@app implement\n~~~",
        "    @app implement",
        "Run `@app implement` when ready.",
        "``@app implement``",
        "> @app implement",
        "> > @app implement",
        "- > @app implement",
        "<!-- @app implement -->",
        "<!--\n@app implement\n-->",
        "before <!-- @app implement --> after",
        "<details>\n@app implement\n</details>",
        "mail me at someone@app implement",
        "@application implement",
    ],
)
def test_a_mention_that_is_not_typed_text_is_no_command(text: str) -> None:
    assert find_command(text, "app") is None


@pytest.mark.parametrize(
    ("text", "verb", "rest"),
    [
        ("@app implement", "implement", ""),
        ("Hi @App[bot]   help", "help", ""),
        ("**@app implement** please", "implement", "please"),
        ("* @app cancel", "cancel", ""),
        ("# @app retry", "retry", ""),
        ("`@app help` is the list; @app implement", "implement", ""),
        ("@app\nimplement", "implement", ""),
    ],
)
def test_a_typed_mention_is_a_command(text: str, verb: str, rest: str) -> None:
    command = find_command(text, "app")
    assert command is not None and (command.verb, command.rest) == (verb, rest)


def test_what_follows_a_command_is_kept_as_written() -> None:
    text = "> old\n\n@app revise rename `foo` to `bar`\n\n- also this\n\n```py\nx = 1\n```\n"
    assert find_command(text, "app") == Command(
        "app", "revise", "rename `foo` to `bar`\n\n- also this\n\n```py\nx = 1\n```"
    )


def test_without_a_slug_any_mention_followed_by_a_word_counts() -> None:
    assert find_command("ping @bob please look", None) == Command("bob", "please", "look")
    assert find_command("`@bob please`", None) is None
