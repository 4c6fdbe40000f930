"""Admin API tokens: shown once, stored only as a SHA-256 hash, compared in constant time."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from eventctl.db import TZDateTime


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    name: str = Field(primary_key=True, max_length=100)
    prefix: str = Field(max_length=32)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(sa_type=TZDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=TZDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=TZDateTime)
