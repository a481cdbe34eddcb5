"""Memory notes per job and per repository: typed, bounded, the oldest archived when the store gets full.

A note written during a job (job_id set) is shown to that job's later steps first and, as part of the
repository's notes, to later jobs on the same repository.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.store.db import session_scope
from engine.store.models import MemoryNote

log = logging.getLogger(__name__)

KINDS = ("Decision", "Constraint", "Todo", "Glossary", "Link")


@dataclass(frozen=True)
class MemoryLimits:
    max_notes: int = 100  # active notes per repository
    max_bytes: int = 32 * 1024  # active notes' text per repository
    max_note_bytes: int = 2 * 1024
    archive_at: float = 0.8  # archive the oldest once the store is fuller than this


class MemoryStore:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], limits: MemoryLimits | None = None
    ) -> None:
        self.sessions = sessions
        self.limits = limits or MemoryLimits()

    async def add(self, *, repo: str, job_id: str | None, kind: str, text: str) -> int:
        """Store a note and return its id; refuses an unknown kind, empty text or text over the limit."""
        canonical = next((k for k in KINDS if k.lower() == kind.strip().lower()), None)
        if canonical is None:
            raise ValueError(f"unknown note kind {kind!r}; use one of {', '.join(KINDS)}")
        text = text.strip()
        if not text:
            raise ValueError("a memory note needs text")
        if len(text.encode()) > self.limits.max_note_bytes:
            raise ValueError(f"a memory note may hold at most {self.limits.max_note_bytes} bytes")
        async with session_scope(self.sessions) as session:
            note = MemoryNote(repo=repo, job_id=job_id, kind=canonical, text=text)
            session.add(note)
            await session.flush()
            note_id = note.id
            await self._archive_oldest(session, repo)
        return note_id

    async def _archive_oldest(self, session: AsyncSession, repo: str) -> None:
        rows = (
            await session.execute(
                select(MemoryNote.id, MemoryNote.text)
                .where(MemoryNote.repo == repo, MemoryNote.archived.is_(False))
                .order_by(MemoryNote.created_at, MemoryNote.id)
            )
        ).all()
        count = len(rows)
        size = sum(len(text.encode()) for _, text in rows)
        limit_count = self.limits.max_notes * self.limits.archive_at
        limit_bytes = self.limits.max_bytes * self.limits.archive_at
        archive: list[int] = []
        for note_id, text in rows[:-1]:  # the note just written is never the one archived
            if count <= limit_count and size <= limit_bytes:
                break
            archive.append(note_id)
            count -= 1
            size -= len(text.encode())
        if archive:
            await session.execute(update(MemoryNote).where(MemoryNote.id.in_(archive)).values(archived=True))
            log.info("archived %d memory notes", len(archive), extra={"repo": repo})

    async def active(self, *, repo: str, job_id: str | None = None) -> list[MemoryNote]:
        """The repository's active notes, this job's first, each group oldest first."""
        async with self.sessions() as session:
            notes = list(
                (
                    await session.scalars(
                        select(MemoryNote)
                        .where(MemoryNote.repo == repo, MemoryNote.archived.is_(False))
                        .order_by(MemoryNote.created_at, MemoryNote.id)
                    )
                ).all()
            )
        return sorted(notes, key=lambda n: 0 if job_id is not None and n.job_id == job_id else 1)

    async def for_prompt(self, *, repo: str, job_id: str | None = None) -> str:
        """The active notes as prompt text ("" when there are none)."""
        notes = await self.active(repo=repo, job_id=job_id)
        lines = []
        for note in notes:
            scope = "this job" if job_id is not None and note.job_id == job_id else "repository"
            lines.append(f"- [{note.kind}] ({scope}) {note.text}")
        return "\n".join(lines)
