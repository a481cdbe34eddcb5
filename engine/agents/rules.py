"""The agents' roles and rules from autodev's own AGENTS.md (the repository's files: instructions.py)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

AGENTS_MD = Path(__file__).resolve().parents[2] / "AGENTS.md"


@dataclass(frozen=True, slots=True)
class AgentRules:
    sha256: str
    policies: str
    roles: dict[str, str]

    def system_prompt(self, role: str, conventions: str = "") -> str:
        parts = [self.roles.get(role, ""), "# Policies (always apply)\n" + self.policies]
        if conventions:
            parts.append("# This repository's conventions (from its own files)\n" + conventions)
        return "\n\n".join(p for p in parts if p.strip())


def parse_agents_md(text: str) -> AgentRules:
    sections: dict[str, str] = {}
    for match in re.finditer(r"^## +(.+?)\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S):
        sections[match.group(1).strip().lower()] = match.group(2).strip()
    missing = [name for name in ("policies", "planner", "coder") if name not in sections]
    if missing:
        raise ValueError(f"AGENTS.md lacks the section(s): {', '.join('## ' + m.title() for m in missing)}")
    policies = sections.pop("policies")
    return AgentRules(hashlib.sha256(text.encode()).hexdigest(), policies, sections)


@lru_cache(maxsize=4)
def _load(path: Path, mtime_ns: int) -> AgentRules:
    return parse_agents_md(path.read_text(encoding="utf-8"))


def load_agent_rules(path: Path = AGENTS_MD) -> AgentRules:
    """AGENTS.md as parsed now (re-read when the file changes)."""
    return _load(path, path.stat().st_mtime_ns)
