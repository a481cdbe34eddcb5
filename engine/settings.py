"""The one configuration object, read from the environment and `.env` (design.md §2).

It lives in the engine so that every adapter can type against it; the composition root (`autodev`)
is the only place that builds it, once, and hands it to the others.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from engine.redact import pem_secrets, url_secrets

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/autodev.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Storage and queue
    database_url: str = Field(default=DEFAULT_DATABASE_URL, validate_default=True)
    redis_url: str | None = None
    data_dir: Path = Field(default=Path("./data"), validate_default=True)
    public_url: str = "http://localhost:8000"

    # GitHub App
    github_app_id: int | None = None
    github_private_key: SecretStr | None = None
    github_webhook_secret: SecretStr | None = None
    github_app_slug: str | None = None
    github_api_url: str = "https://api.github.com"
    autodev_trigger_label: str = "auto-dev"
    webhook_max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    # "C0123:owner/repo,owner/other;U0456:owner/repo" — who may target what from Slack.
    slack_allowed: Annotated[dict[str, list[str]], NoDecode] = Field(default_factory=dict)

    # LLM
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    model_planner: str = "gpt-4.1-mini"
    model_coder: str = "gpt-4.1"
    llm_timeout_seconds: float = Field(default=120.0, gt=0)
    llm_max_retries: int = Field(default=4, ge=0)
    pricing_file: Path | None = None
    # An embeddings model served by the same endpoint; unset: retrieval is BM25 alone.
    embedding_model: str | None = None

    # Per-job limits (overridable per request)
    job_budget_usd: float = Field(default=5.0, gt=0)
    job_max_requests: int = Field(default=300, gt=0)
    job_max_minutes: float = Field(default=60.0, gt=0)

    # Workspace and tests
    workspace_dir: Path | None = None
    mirror_cache_max_bytes: int = Field(default=5 * 1024**3, gt=0)
    test_timeout_seconds: float = Field(default=600.0, gt=0)
    test_output_max_bytes: int = Field(default=64 * 1024, gt=0)
    # A repository's setup (docs/repo-config.md) has a timeout and an output cap of its own.
    setup_timeout_seconds: float = Field(default=900.0, gt=0)
    setup_output_max_bytes: int = Field(default=64 * 1024, gt=0)
    # How the repository's commands are isolated: bwrap (bubblewrap; when it cannot start, the commands do
    # not run and the job says so) or none (the operator's explicit choice: no isolation at all).
    sandbox: Literal["bwrap", "none"] = "bwrap"
    bwrap_path: str = "bwrap"  # the bubblewrap executable, when it is not on PATH
    # Extra read-only paths the sandbox shows (a toolchain outside the system dirs), joined by ':'.
    sandbox_readonly_paths: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    test_memory_mb: int = Field(default=4096, gt=0)
    test_max_processes: int = Field(default=512, gt=0)
    repair_rounds: int = Field(default=3, ge=0)
    coder_max_turns: int = Field(default=40, gt=0)
    context_budget_tokens: int = Field(default=24_000, gt=1000)

    # Worker
    worker_max_jobs: int = Field(default=50, gt=0)
    job_max_tries: int = Field(default=3, gt=0)
    # How often an idle worker looks at the queue: the longest a new job waits to start (ARQ polls Redis).
    worker_poll_delay_s: float = Field(default=0.05, gt=0, le=5)

    # Operators (the /jobs list); unset: the list is closed.
    operator_token: SecretStr | None = None
    # A bearer token /metrics asks for; unset: /metrics is open to whoever reaches the port.
    metrics_token: SecretStr | None = None

    # Spending caps on top of the per-job budget; unset: no cap.
    daily_budget_usd: float | None = Field(default=None, gt=0)
    repo_daily_budget_usd: float | None = Field(default=None, gt=0)

    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("slack_allowed", mode="before")
    @classmethod
    def _parse_slack_allowed(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        mapping: dict[str, list[str]] = {}
        for entry in filter(None, (part.strip() for part in value.split(";"))):
            who, sep, repos = entry.partition(":")
            if not sep or not who.strip():
                raise ValueError(
                    f"expected 'CHANNEL_OR_USER:owner/repo,…' entries joined by ';', got {entry!r}"
                )
            names = [r.strip() for r in repos.split(",") if r.strip()]
            for name in names:
                if name != "*" and name.count("/") != 1:
                    raise ValueError(f"{name!r} is not owner/repo")
            mapping[who.strip()] = names
        return mapping

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("use sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db")
        url = make_url(value)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            path = Path(url.database).expanduser()
            if not path.is_absolute():
                value = url.set(database=str(path.absolute())).render_as_string(hide_password=False)
        return value

    @field_validator("sandbox_readonly_paths", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(":") if part.strip()]
        return value

    @field_validator("sandbox_readonly_paths")
    @classmethod
    def _absolute_paths(cls, value: list[Path]) -> list[Path]:
        return [p.expanduser().absolute() for p in value]

    @field_validator("data_dir", "workspace_dir", "pricing_file")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        """Made absolute once, at start-up: git and the repository's commands run in other directories."""
        return None if value is None else value.expanduser().absolute()

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("use redis://host:port/db, rediss://… or unix:///path/to/socket")
        return value or None

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"use one of {', '.join(LOG_LEVELS)}")
        return level

    @property
    def github_configured(self) -> bool:
        return bool(self.github_app_id and self.github_private_key and self.github_webhook_secret)

    @property
    def slack_configured(self) -> bool:
        return bool(self.slack_bot_token and (self.slack_signing_secret or self.slack_app_token))

    @property
    def llm_configured(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url)

    def github_private_key_pem(self) -> str | None:
        """The App's key as PEM text; GITHUB_PRIVATE_KEY may hold the text or a path to it."""
        if self.github_private_key is None:
            return None
        raw = self.github_private_key.get_secret_value()
        if "-----BEGIN" in raw:
            return raw.replace("\\n", "\n")
        return Path(raw).expanduser().read_text()

    def secret_values(self) -> list[str]:
        """Every configured secret, so logs and workspaces can be scrubbed of them: the credentials, the
        passwords in the URLs (DATABASE_URL, REDIS_URL, …) and the App key's text even when
        GITHUB_PRIVATE_KEY is a path to it."""
        values = [
            s.get_secret_value()
            for s in (
                self.github_private_key,
                self.github_webhook_secret,
                self.slack_bot_token,
                self.slack_signing_secret,
                self.slack_app_token,
                self.openai_api_key,
                self.operator_token,
                self.metrics_token,
            )
            if s is not None
        ]
        values += url_secrets(
            self.database_url, self.redis_url, self.openai_base_url, self.github_api_url, self.slack_api_url
        )
        with contextlib.suppress(OSError, UnicodeDecodeError):  # a missing key file is reported elsewhere
            values += pem_secrets(self.github_private_key_pem())
        return [v for v in values if len(v) >= 6]
