"""The image and docker-compose.yml keep their promises (read from the files: no Docker engine runs here).

Dockerfile: the final stage runs as a non-root user, has git and bubblewrap, gets the venv and the sources
only, and leaves autodev's venv off PATH; the venv has no dev or bench dependency. .dockerignore keeps
secrets and local state out of the build context. docker-compose.yml is valid Compose, works without the
2.24+ `env_file` form, checks the worker's health, and lets bubblewrap make its namespaces with Docker's
default seccomp profile plus the few calls it needs, not with `privileged`.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
AUTODEV = "/app/.venv/bin/autodev"

# What bubblewrap calls to build its sandbox as an unprivileged user: a user namespace and the others
# (clone/unshare with CLONE_NEW*), then mounts inside it (mount, umount2, pivot_root) and its hostname.
# Docker's default profile allows these only to containers with CAP_SYS_ADMIN (pivot_root to none).
BWRAP_SYSCALLS = ["clone", "mount", "pivot_root", "sethostname", "umount2", "unshare"]
DEV_ONLY = {"pytest", "pytest-asyncio", "pytest-timeout", "respx", "ruff", "mypy", "playwright", "jsonschema",
            "py-spy", "pyinstrument", "types-pyyaml"}  # fmt: skip


def worker_seccomp(default: dict[str, Any]) -> dict[str, Any]:
    """Docker's default profile, with bubblewrap's calls allowed whatever the container's capabilities."""
    profile = copy.deepcopy(default)
    rules = []
    for rule in profile["syscalls"]:
        if rule["names"] == ["clone"] and "args" in rule:
            continue  # clone without CLONE_NEW* flags, for containers without CAP_SYS_ADMIN: superseded
        if rule.get("includes", {}).get("caps") == ["CAP_SYS_ADMIN"]:
            rule["names"] = [name for name in rule["names"] if name not in BWRAP_SYSCALLS]
        rules.append(rule)
    rules.append(
        {
            "names": BWRAP_SYSCALLS,
            "action": "SCMP_ACT_ALLOW",
            "comment": "bubblewrap: its namespaces, and the mounts inside them",
        }
    )
    profile["syscalls"] = rules
    return profile


# -- Dockerfile ----------------------------------------------------------------------------------------


def stages() -> list[list[tuple[str, str]]]:
    """Each stage's instructions as (INSTRUCTION, arguments), line continuations joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    found: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            found.append([])
        if found:
            found[-1].append((instruction.upper(), rest.strip()))
    return found


def test_the_final_stage_runs_as_a_user_who_is_not_root() -> None:
    users = [args for instruction, args in stages()[-1] if instruction == "USER"]
    assert users, "no USER in the final stage: it would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_the_final_stage_has_git_and_bubblewrap() -> None:
    runs = " ".join(args for instruction, args in stages()[-1] if instruction == "RUN")
    install = re.search(r"apt-get install ([^&;]*)", runs)
    assert install is not None
    assert {"git", "bubblewrap"} <= set(install[1].split())


def test_the_final_stage_gets_only_the_venv_and_the_sources_built_before() -> None:
    assert len(stages()) >= 2, "not a multi-stage build"
    copies = [args for instruction, args in stages()[-1] if instruction == "COPY"]
    assert copies and all(args.startswith("--from=") for args in copies), copies
    env = " ".join(args for instruction, args in stages()[-1] if instruction == "ENV")
    assert ".venv" not in env, "autodev's venv on PATH: a repository's `python -m pytest` would run in it"
    cmd = next(args for instruction, args in stages()[-1] if instruction == "CMD")
    assert json.loads(cmd)[0] == AUTODEV


def test_the_venv_has_no_dev_or_bench_dependency() -> None:
    """Regression: `uv sync --no-dev` still installed py-spy and pyinstrument (the default bench group)."""
    runs = [args for instruction, args in stages()[0] if instruction == "RUN"]
    syncs = [shlex.split(args) for args in runs if "uv sync" in args]
    assert syncs
    for sync in syncs:
        assert "--frozen" in sync
        flags = [f for f in sync if f in ("--no-dev", "--no-default-groups") or f.startswith("--only-group")]
        uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
        exported = subprocess.run(
            [uv, "export", "--frozen", "--no-hashes", "--no-emit-project", *flags],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        packages = {line.split("==")[0].lower() for line in exported.splitlines() if "==" in line}
        assert {"fastapi", "arq", "githubkit"} <= packages
        assert packages & DEV_ONLY == set()


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern that matches the path or a folder above it decides; `!` re-includes."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    "path",
    [".env", ".env.production", "data/autodev.db", "data/github-app.pem", "data/redis/appendonly.aof",
     ".venv/bin/python", ".tools/bin/uv", ".git/HEAD", "tests/conftest.py", "test-artifacts/page.png",
     "engine/__pycache__/jobs.cpython-311.pyc", ".pytest_cache/v/cache", ".mypy_cache/3.11/x.json",
     "github-app.pem"],
)  # fmt: skip
def test_secrets_local_state_and_caches_stay_out_of_the_build_context(path: str) -> None:
    assert dockerignored(path)


@pytest.mark.parametrize("path", ["autodev/cli.py", "engine/jobs.py", "uv.lock", "pyproject.toml", "app.yml"])
def test_what_the_image_needs_is_in_the_build_context(path: str) -> None:
    assert not dockerignored(path)


# -- docker-compose.yml --------------------------------------------------------------------------------


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((FIXTURES / "compose-spec" / "compose-spec.json").read_text())
    validator = Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert errors == []


def test_env_file_uses_the_form_every_compose_v2_reads() -> None:
    """Regression: `env_file: [{path, required}]` needs Compose 2.24+, which the README did not say."""
    for name, service in COMPOSE["services"].items():
        env_file = service.get("env_file", [])
        for entry in [env_file] if isinstance(env_file, str) else env_file:
            assert isinstance(entry, str), f"{name}: env_file entries must be plain paths"


def test_the_services_run_autodev_from_its_venv() -> None:
    for name in ("migrate", "api", "worker"):
        assert COMPOSE["services"][name]["command"][0] == AUTODEV, name


def test_the_worker_has_a_health_check_of_its_own() -> None:
    check = COMPOSE["services"]["worker"]["healthcheck"]["test"]
    assert check[0] == "CMD" and check[1:] == [AUTODEV, "worker", "--check"]


def test_the_worker_may_make_namespaces_without_being_privileged() -> None:
    worker = COMPOSE["services"]["worker"]
    assert not worker.get("privileged", False)
    assert "SYS_ADMIN" not in worker.get("cap_add", []) and "ALL" not in worker.get("cap_add", [])
    options = worker["security_opt"]
    seccomp = [option.split("=", 1)[1] for option in options if option.startswith("seccomp=")]
    assert seccomp and seccomp[0] not in ("unconfined", "builtin")
    profile = json.loads((ROOT / seccomp[0]).read_text())
    default = json.loads((FIXTURES / "moby-seccomp" / "default.json").read_text())
    assert profile == worker_seccomp(default), "the profile must be Docker's default plus bubblewrap's calls"
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    # bwrap mounts a fresh /proc for its PID namespace; the kernel refuses that in a user namespace while
    # Docker masks parts of /proc, so the worker's /proc is left unmasked.
    assert "systempaths=unconfined" in options
    assert not {"api", "migrate"} & {n for n, s in COMPOSE["services"].items() if s.get("security_opt")}
