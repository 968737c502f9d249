"""Every routing configuration the router has applied, numbered, with where it came from.

At start the file wins when it changed since it was last applied; otherwise the latest version (which
may have come through ``PUT /v1/config``) is applied again, so changes made through the API survive a
restart until someone edits the file.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.router.adapters.orm import config_versions


@dataclass(frozen=True, slots=True)
class Version:
    version: int
    source: str
    text: str
    applied_by: str
    applied_at: datetime


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def latest(conn: AsyncConnection) -> Version | None:
    """The configuration applied last, if any."""
    row = (
        await conn.execute(
            select(
                config_versions.c.version,
                config_versions.c.source,
                config_versions.c.text,
                config_versions.c.applied_by,
                config_versions.c.applied_at,
            )
            .order_by(config_versions.c.version.desc())
            .limit(1)
        )
    ).first()
    return Version(*row) if row else None


async def file_changed(conn: AsyncConnection, text: str) -> bool:
    """Whether the file's ``text`` differs from the file last applied (or none was)."""
    last = (
        await conn.execute(
            select(config_versions.c.sha256)
            .where(config_versions.c.source == "file")
            .order_by(config_versions.c.version.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return last != digest(text)


async def record(conn: AsyncConnection, *, source: str, text: str, applied_by: str) -> int:
    """Store an applied configuration; return its version number."""
    result = await conn.execute(
        insert(config_versions)
        .values(source=source, sha256=digest(text), text=text, applied_by=applied_by)
        .returning(config_versions.c.version)
    )
    return int(result.scalar_one())
