"""Categories known to eventctl, and the check that events name only known ones (SPEC §6)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from datetime import datetime

from sqlmodel import Field, Session, SQLModel, col, func, select

from eventctl.db import TZDateTime
from eventctl.errors import InvalidInput


class Category(SQLModel, table=True):
    __tablename__ = "categories"

    uid: uuid.UUID = Field(primary_key=True)
    name: str = Field(max_length=200, unique=True)
    title: str = Field(default="", max_length=500)
    description: str | None = Field(default=None)
    created_at: datetime = Field(sa_type=TZDateTime)
    updated_at: datetime = Field(sa_type=TZDateTime)


def check_known_categories(session: Session, ids: Iterable[str]) -> None:
    """Once any category is known, every id must name one (InvalidInput naming the rest)."""
    wanted = list(dict.fromkeys(str(i) for i in ids))
    if not wanted:
        return
    if not session.exec(select(func.count()).select_from(Category)).one():
        return
    known = {
        str(u) for u in session.exec(select(Category.uid).where(col(Category.uid).in_([uuid.UUID(i) for i in wanted])))
    }
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise InvalidInput(f"Unknown category id(s): {', '.join(unknown)}.")


def resolve_category_refs(session: Session, refs: list[str]) -> list[str]:
    """``--category`` values: a uid, or the name of a known category → uid strings."""
    out: list[str] = []
    for ref in refs:
        text = ref.strip()
        try:
            out.append(str(uuid.UUID(text)))
            continue
        except ValueError:
            pass
        found = session.exec(select(Category.uid).where(Category.name == text)).first()
        if found is None:
            raise InvalidInput(f"--category {text!r} is neither a UUID nor the name of a known category.")
        out.append(str(found))
    return out


def category_to_json(cat: Category) -> dict[str, Any]:
    return {"uid": str(cat.uid), "name": cat.name, "title": cat.title, "description": cat.description}
