"""A target repository's `.github/autodev.yml`: test command, budget, base branch, protected paths."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import PermanentFailure

CONFIG_PATH = ".github/autodev.yml"


class ContextConfig(BaseModel):
    """What the context engine ranks: `exclude` globs are never shown, `include` globs rank as source."""

    model_config = ConfigDict(extra="forbid")

    exclude: list[str] = Field(default_factory=list)
    include: list[str] = Field(default_factory=list)


class RepoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    test_command: str | None = None
    budget_usd: float | None = Field(default=None, gt=0)
    base_branch: str | None = None
    protected_paths: list[str] = Field(default_factory=list)
    context: ContextConfig = Field(default_factory=ContextConfig)


def parse_repo_config(text: str | None) -> RepoConfig:
    """The config in `text` (None or empty: defaults); malformed → PermanentFailure naming the problem."""
    import yaml

    if text is None or not text.strip():
        return RepoConfig()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PermanentFailure(f"{CONFIG_PATH} is not valid YAML: {exc}") from exc
    if raw is None:
        return RepoConfig()
    if not isinstance(raw, dict):
        raise PermanentFailure(f"{CONFIG_PATH} must be a mapping of settings, got {type(raw).__name__}")
    try:
        return RepoConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise PermanentFailure(f"{CONFIG_PATH} is invalid: {problems}") from exc
