"""What the Slack side reads and writes besides jobs: who may target which repo, installations, follows."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.settings import Settings
from engine.store.db import session_scope
from engine.store.models import Installation, InstallationRepo, Job, SlackRepoChannel


def _grants_repo(repos: list[str], repo: str) -> bool:
    return any(r == "*" or r.lower() == repo.lower() for r in repos)


def is_admin(settings: Settings, user: str) -> bool:
    """Operators name admins in SLACK_ALLOWED with `*`; only they manage the grants table."""
    return "*" in settings.slack_allowed.get(user, [])


async def may_target(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], *, channel: str, user: str, repo: str
) -> bool:
    """A user may target a repo when they, or the channel they ask in, are granted it (settings or table)."""
    subjects = [s for s in (channel, user) if s]
    if any(_grants_repo(settings.slack_allowed.get(s, []), repo) for s in subjects):
        return True
    async with sessions() as session:
        rows = await session.scalars(
            select(SlackRepoChannel.repo).where(SlackRepoChannel.subject.in_(subjects))
        )
        return _grants_repo(list(rows), repo)


async def installation_for(sessions: async_sessionmaker[AsyncSession], repo: str) -> tuple[int, str] | None:
    """(installation id, the repo's name as GitHub spells it) when the App is installed and not suspended."""
    async with sessions() as session:
        row = (
            await session.execute(
                select(InstallationRepo.installation_id, InstallationRepo.repo)
                .join(Installation, Installation.id == InstallationRepo.installation_id)
                .where(func.lower(InstallationRepo.repo) == repo.lower(), Installation.suspended.is_(False))
            )
        ).first()
    return (int(row[0]), str(row[1])) if row else None


async def follow_channels(sessions: async_sessionmaker[AsyncSession], repo: str) -> list[str]:
    async with sessions() as session:
        rows = await session.scalars(
            select(SlackRepoChannel.subject).where(
                func.lower(SlackRepoChannel.repo) == repo.lower(),
                SlackRepoChannel.follow.is_(True),
                SlackRepoChannel.subject.like("C%") | SlackRepoChannel.subject.like("G%"),
            )
        )
        return sorted(set(rows))


async def set_grant(
    sessions: async_sessionmaker[AsyncSession], *, subject: str, repo: str, follow: bool
) -> None:
    async with session_scope(sessions) as session:
        row = await session.get(SlackRepoChannel, (subject, repo))
        if row is None:
            session.add(SlackRepoChannel(subject=subject, repo=repo, follow=follow))
        else:
            row.follow = follow


async def revoke_grant(sessions: async_sessionmaker[AsyncSession], *, subject: str, repo: str) -> bool:
    async with session_scope(sessions) as session:
        result = await session.execute(
            delete(SlackRepoChannel).where(SlackRepoChannel.subject == subject, SlackRepoChannel.repo == repo)
        )
        return bool(getattr(result, "rowcount", 0))


async def find_job_id(sessions: async_sessionmaker[AsyncSession], ref: str) -> str | None:
    """The job whose id is `ref` or starts with it; None when no job or more than one matches."""
    async with sessions() as session:
        rows = list(await session.scalars(select(Job.id).where(Job.id.like(f"{ref}%")).limit(2)))
    return rows[0] if len(rows) == 1 else None


async def recent_jobs(
    sessions: async_sessionmaker[AsyncSession], *, requester: str, limit: int = 5
) -> list[Job]:
    async with sessions() as session:
        rows = await session.scalars(
            select(Job).where(Job.requester == requester).order_by(Job.created_at.desc()).limit(limit)
        )
        return list(rows)
