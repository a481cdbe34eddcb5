"""A target repository's `.github/autodev.yml`: test command, setup, budget, base branch, protected paths, …

docs/repo-config.md documents every key; tests/engine/test_repo_config_docs.py keeps the two in step.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    # gitignore-style patterns ("secrets", "/config/**", "infra/", "*.pem", "!public.pem") the coder may not
    # write, delete or create; added to the defaults (.github/workflows/, .github/actions/, this file).
    protected_paths: list[str] = Field(default_factory=list)
    # Whether the repository's tests may use the network; off by default (setup always has it).
    network: bool = False
    context: ContextConfig = Field(default_factory=ContextConfig)
    # Commands that prepare the environment the tests run in (install dependencies), run once per change of
    # the lockfiles. None: none given here, so .github/workflows/copilot-setup-steps.yml or
    # .openhands/setup.sh are looked for; [] turns setup off.
    setup: list[str] | None = None
    # How many times autodev tries to fix a failing CI check on a pull request it opened; 0 turns it off.
    ci_fix_rounds: int = Field(default=2, ge=0, le=10)
    # Whether the planner may ask one clarifying question instead of planning an ambiguous task.
    questions: bool = True
    # Whether a plan waits for a writer's approval (`@app go`, 👍, Slack's Approve) before coding starts.
    plan_approval: bool = False
    # A question or plan left unanswered this long cancels the job (with a note).
    question_timeout_hours: float = Field(default=72.0, gt=0)

    @field_validator("setup", mode="before")
    @classmethod
    def _one_command_or_a_list(cls, value: Any) -> Any:
        """`setup: pip install -e .` is a list of that one command; a block (`|`) is one script."""
        return [value] if isinstance(value, str) else value

    @field_validator("setup")
    @classmethod
    def _commands_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not command.strip() for command in value):
            raise ValueError("a setup command is empty")
        return value

    @field_validator("protected_paths", mode="before")
    @classmethod
    def _one_block_of_patterns(cls, value: Any) -> Any:
        """One YAML block (`|`) of patterns, one a line, is read as the list of its lines."""
        return value.splitlines() if isinstance(value, str) else value

    @field_validator("protected_paths")
    @classmethod
    def _valid_patterns(cls, value: list[str]) -> list[str]:
        import pathspec

        patterns = [p.strip() for p in value if p.strip() and not p.strip().startswith("#")]
        for pattern in patterns:
            try:
                pathspec.GitIgnoreSpec.from_lines([pattern])
            except ValueError as exc:
                raise ValueError(f"{pattern!r} is not a valid gitignore-style pattern") from exc
        return patterns


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
