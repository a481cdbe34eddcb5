"""Keep the `installations` and `installation_repos` tables in step with installation webhooks."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.store.db import session_scope
from engine.store.models import Installation, InstallationRepo
from github_app.payloads import InstallationEvent, InstallationReposEvent


async def record_installation(sessions: async_sessionmaker[AsyncSession], event: InstallationEvent) -> str:
    inst = event.installation
    async with session_scope(sessions) as session:
        if event.action == "deleted":
            await session.execute(delete(InstallationRepo).where(InstallationRepo.installation_id == inst.id))
            await session.execute(delete(Installation).where(Installation.id == inst.id))
            return "deleted"
        row = await session.get(Installation, inst.id)
        if row is None:
            row = Installation(id=inst.id, account=inst.account.login if inst.account else "")
            session.add(row)
        if inst.account is not None:
            row.account = inst.account.login
        row.suspended = event.action == "suspend" or (row.suspended and event.action != "unsuspend")
        await session.flush()
        if event.action == "created":
            await _add_repos(session, inst.id, [r.full_name for r in event.repositories or []])
    return event.action or "updated"


async def record_repositories(
    sessions: async_sessionmaker[AsyncSession], event: InstallationReposEvent
) -> str:
    inst = event.installation
    async with session_scope(sessions) as session:
        if await session.get(Installation, inst.id) is None:
            session.add(Installation(id=inst.id, account=inst.account.login if inst.account else ""))
            await session.flush()
        await _add_repos(session, inst.id, [r.full_name for r in event.repositories_added])
        removed = [r.full_name for r in event.repositories_removed]
        if removed:
            await session.execute(
                delete(InstallationRepo).where(
                    InstallationRepo.installation_id == inst.id, InstallationRepo.repo.in_(removed)
                )
            )
    return event.action or "updated"


async def _add_repos(session: AsyncSession, installation_id: int, names: list[str]) -> None:
    for name in names:
        if await session.get(InstallationRepo, (installation_id, name)) is None:
            session.add(InstallationRepo(installation_id=installation_id, repo=name))
