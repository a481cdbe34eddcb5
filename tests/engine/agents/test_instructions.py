"""The repository's instruction files: read in the stated order, the nearest AGENTS.md, bounded, and never
through a symlink that leads out of the worktree."""

from __future__ import annotations

import os
from pathlib import Path

from engine.agents.instructions import FILE_MAX_CHARS, TOTAL_MAX_CHARS, as_prompt, instruction_files


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_every_kind_of_instruction_file_is_read_in_the_stated_order(tmp_path: Path) -> None:
    write(tmp_path, {
        "CONTRIBUTING.md": "contributing", ".cursorrules": "cursor file", ".cursor/rules/b.mdc": "rule b",
        ".cursor/rules/a.mdc": "rule a", ".github/copilot-instructions.md": "copilot", "CLAUDE.md": "claude",
        "AGENTS.md": "agents", ".github/CONTRIBUTING.md": "second contributing",
    })  # fmt: skip

    told = instruction_files(tmp_path)

    assert [i.path for i in told] == [
        "AGENTS.md",
        "CLAUDE.md",
        ".github/copilot-instructions.md",
        ".cursor/rules/a.mdc",
        ".cursor/rules/b.mdc",
        ".cursorrules",
        "CONTRIBUTING.md",
    ]
    assert as_prompt(told).startswith("## AGENTS.md\nagents\n\n## CLAUDE.md\nclaude")


def test_the_agents_md_nearest_to_the_files_of_the_work_wins(tmp_path: Path) -> None:
    write(tmp_path, {"AGENTS.md": "root", "web/AGENTS.md": "web", "web/ui/button.ts": "", "api/x.py": ""})

    assert [i.text for i in instruction_files(tmp_path, ["web/ui/button.ts"])] == ["web"]
    assert [i.text for i in instruction_files(tmp_path, ["api/x.py", "web/ui/button.ts"])] == ["web"]
    assert [i.text for i in instruction_files(tmp_path, ["api/x.py"])] == ["root"]
    assert [i.text for i in instruction_files(tmp_path)] == ["root"]


def test_each_file_and_all_of_them_are_bounded(tmp_path: Path) -> None:
    write(tmp_path, {"AGENTS.md": "a" * (FILE_MAX_CHARS * 3), "CLAUDE.md": "c" * FILE_MAX_CHARS})
    write(tmp_path, {".cursorrules": "r" * FILE_MAX_CHARS})

    told = instruction_files(tmp_path)

    assert [(i.path, len(i.text), i.truncated) for i in told][:1] == [("AGENTS.md", FILE_MAX_CHARS, True)]
    assert sum(len(i.text) for i in told) <= TOTAL_MAX_CHARS


def test_a_symlink_out_of_the_worktree_or_a_fifo_is_not_read(tmp_path: Path) -> None:
    """A repository could point AGENTS.md at the worker's files to have them put into the prompt."""
    outside = tmp_path / "secret.txt"
    outside.write_text("the worker's secret")
    repo = tmp_path / "repo"
    (repo / ".github").mkdir(parents=True)
    (repo / "AGENTS.md").symlink_to(outside)
    (repo / "CLAUDE.md").symlink_to(tmp_path)
    os.mkfifo(repo / ".cursorrules")
    (repo / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    (repo / ".cursor").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "x.mdc").write_text("the worker's rules")

    assert instruction_files(repo, ["elsewhere/secret.txt"]) == []
