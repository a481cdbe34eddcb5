"""Settings: read once from the environment; a malformed value is one clear line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autodev.config import SettingsError, load_settings


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autodev", *args],
        env={"PATH": os.environ["PATH"], **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_bad_setting_is_one_line_naming_the_variable_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("migrate", env={"JOB_BUDGET_USD": "-1"}, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "autodev: invalid setting JOB_BUDGET_USD: Input should be greater than 0 (got '-1')"
    ]
    assert "Traceback" not in result.stderr


def test_an_unknown_log_level_is_one_line_and_exit_2_not_a_traceback(tmp_path: Path) -> None:
    """LOG_LEVEL=verbose passed validation and crashed in logging.setLevel with a traceback."""
    result = run_cli("migrate", env={"LOG_LEVEL": "verbose"}, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "autodev: invalid setting LOG_LEVEL: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL (got 'verbose')"
    ]
    assert not (tmp_path / "data").exists()  # refused before anything ran


def test_the_log_level_is_read_in_any_case() -> None:
    assert load_settings(_env_file=None, log_level=" debug ").log_level == "DEBUG"


def test_a_database_url_of_an_unsupported_kind_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root@localhost/x")

    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)

    assert "DATABASE_URL" in caught.value.message
    assert "postgresql+asyncpg" in caught.value.message


def test_secrets_are_never_echoed_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_APP_ID", "not-a-number")

    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, slack_allowed="C1:octo/widgets;bad-entry")

    assert "GITHUB_APP_ID" in caught.value.message
    assert "SLACK_ALLOWED" in caught.value.message


def test_slack_allowed_maps_channels_and_users_to_repositories() -> None:
    settings = load_settings(_env_file=None, slack_allowed="C1:octo/widgets, octo/gears;U2:*")

    assert settings.slack_allowed == {"C1": ["octo/widgets", "octo/gears"], "U2": ["*"]}


def test_no_credentials_at_all_is_a_valid_configuration() -> None:
    settings = load_settings(_env_file=None)

    assert not settings.github_configured
    assert not settings.slack_configured
    assert not settings.llm_configured
    assert settings.database_url == f"sqlite+aiosqlite:///{Path.cwd()}/data/autodev.db"  # ./data, absolute


def test_the_private_key_may_be_a_path_to_the_pem(tmp_path: Path) -> None:
    pem = tmp_path / "app.pem"
    pem.write_text("-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n")

    from_path = load_settings(_env_file=None, github_private_key=str(pem))
    inline = load_settings(
        _env_file=None, github_private_key="-----BEGIN RSA PRIVATE KEY-----\\nabc\\n-----END"
    )

    assert from_path.github_private_key_pem() == pem.read_text()
    assert (inline.github_private_key_pem() or "").splitlines()[1] == "abc"


def test_relative_paths_are_made_absolute_once_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: with the default DATA_DIR=./data, `git worktree add` got a relative path and every job
    failed; git and the repository's commands run in other directories than the service."""
    monkeypatch.chdir(tmp_path)
    for name in ("DATA_DIR", "DATABASE_URL", "WORKSPACE_DIR", "PRICING_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKSPACE_DIR", "work")
    monkeypatch.setenv("PRICING_FILE", "~/prices.json")

    settings = load_settings(_env_file=None)

    assert settings.data_dir == tmp_path / "data"
    assert settings.workspace_dir == tmp_path / "work"
    assert settings.pricing_file == Path.home() / "prices.json"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/data/autodev.db"


def test_sqlite_in_memory_and_absolute_database_urls_are_kept_as_given() -> None:
    for url in ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:////srv/autodev.db"):
        assert load_settings(_env_file=None, database_url=url).database_url == url
