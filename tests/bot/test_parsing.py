"""`/orchestrate` text → command."""

from __future__ import annotations

import pytest

from bot.parsing import CancelJob, ChangeGrant, CommandError, ShowHelp, ShowStatus, StartJob, parse


def _parse(text: str) -> object:
    return parse(text, max_budget_usd=50)


def test_a_task_with_options_anywhere() -> None:
    assert _parse("octo/app Add caching --budget 2.50 to the --base release/1.2 API client") == StartJob(
        repo="octo/app",
        task="Add caching to the API client",
        title="Add caching to the API client",
        budget_usd=2.5,
        base_branch="release/1.2",
    )


def test_options_may_use_an_equals_sign_and_a_dollar() -> None:
    parsed = _parse("octo/app Fix it --budget=$3")
    assert isinstance(parsed, StartJob) and parsed.budget_usd == 3.0


def test_an_issue_with_extra_instructions() -> None:
    parsed = _parse("octo/app#42 keep the public API")
    assert isinstance(parsed, StartJob)
    assert (parsed.issue_number, parsed.task, parsed.title) == (
        42,
        "keep the public API",
        "Issue #42: keep the public API",
    )


def test_a_long_task_gets_a_short_title() -> None:
    parsed = _parse("octo/app " + "word " * 40)
    assert isinstance(parsed, StartJob) and len(parsed.title) == 80 and parsed.title.endswith("…")


def test_other_double_dash_words_stay_in_the_task() -> None:
    parsed = _parse("octo/app Add a --dry-run flag")
    assert isinstance(parsed, StartJob) and parsed.task == "Add a --dry-run flag"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ShowHelp()),
        ("help", ShowHelp()),
        ("status", ShowStatus(None)),
        ("status ABCDEF12", ShowStatus("abcdef12")),
        ("cancel abcdef12", CancelJob("abcdef12")),
        (
            "allow <#C123ABC|eng> octo/app --follow",
            ChangeGrant("C123ABC", "octo/app", follow=True, revoke=False),
        ),
        ("allow <@U99XYZ> *", ChangeGrant("U99XYZ", "*", follow=False, revoke=False)),
        ("revoke C123ABC octo/app", ChangeGrant("C123ABC", "octo/app", follow=False, revoke=True)),
    ],
)
def test_subcommands(text: str, expected: object) -> None:
    assert _parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "octo Fix it",
        "octo/app#12x Fix it",
        "octo/app Fix --budget -1",
        "octo/app Fix --base -x",
        "octo/app Fix --base a..b",
        "octo/app Fix --base main.lock",
        "status abc",
        "allow somebody octo/app",
        "allow <#C123ABC> octo/app#3",
        "revoke C123ABC",
    ],
)
def test_bad_input_raises_a_readable_error(text: str) -> None:
    with pytest.raises(CommandError):
        _parse(text)


def test_approve_asks_for_the_plan_to_wait_and_is_not_part_of_the_task() -> None:
    parsed = _parse("octo/app --approve Add caching --budget 2")
    assert parsed == StartJob(
        repo="octo/app", task="Add caching", title="Add caching", budget_usd=2.0, approve=True
    )
    assert _parse("octo/app#7 --approve") == StartJob(
        repo="octo/app",
        task="Resolve issue #7 of octo/app.",
        title="Issue #7",
        issue_number=7,
        approve=True,
    )
    plain = _parse("octo/app Add an --approved-by field")
    assert isinstance(plain, StartJob) and not plain.approve and plain.task == "Add an --approved-by field"
