"""The tasks service's model and its async engine: SQLAlchemy 2 over asyncpg.

Built the way the seed's service (ops-core) is: an ``AsyncSession`` per unit of work, a
status enum, the database named by ``TASKS_DATABASE_URL`` (``postgresql+asyncpg://...``).
"""

from __future__ import annotations

import enum
import os
import uuid
from datetime import datetime

from sqlalchemy import DateTime, Enum, String, Text, func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Status(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class Base(DeclarativeBase):
    pass


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    status: Mapped[Status] = mapped_column(
        Enum(Status, native_enum=False, length=16, validate_strings=True),
        default=Status.PENDING,
    )
    mode: Mapped[str] = mapped_column(String(32), default="ok")
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


def make_sessions(application_name: str, **options: object) -> async_sessionmaker[AsyncSession]:
    """One engine per process (and event loop), named for the capture's ``writer`` column."""
    engine = create_async_engine(
        os.environ["TASKS_DATABASE_URL"],
        connect_args={"server_settings": {"application_name": application_name}},
        pool_size=5,
        **options,
    )
    return async_sessionmaker(engine, expire_on_commit=False)
