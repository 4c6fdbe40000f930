"""Categories known to eventctl, and the check that events name only known ones (SPEC §6)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlmodel import Session, col, func, select

from eventctl.errors import InvalidInput
from eventctl.models import Category


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


def parse_category_document(text: str, *, source: str) -> list[dict[str, Any]]:
    """Validate a JSON array in eventctl's shape (uid) or the platform export's shape (id)."""
    import json

    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidInput(f"{source} is not valid JSON ({getattr(exc, 'msg', 'too deeply nested')}).") from None
    if not isinstance(data, list):
        raise InvalidInput(f"{source} must hold a JSON array of categories.")
    items: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    uids: dict[uuid.UUID, int] = {}
    for i, raw in enumerate(data):
        where = f"{source} item {i}"
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where} is not a JSON object.")
        ref = raw.get("uid", raw.get("id"))
        uid = None
        if ref is not None:
            try:
                uid = uuid.UUID(str(ref))
            except ValueError:
                raise InvalidInput(f"{where} has an invalid uid {str(ref)[:60]!r}.") from None
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
            raise InvalidInput(f"{where} needs a name of 1-200 characters.")
        name = name.strip()
        title = raw.get("title")
        title = name if title is None else title
        description = raw.get("description")
        if not isinstance(title, str) or len(title) > 500:
            raise InvalidInput(f"{where} has a title that is not text of at most 500 characters.")
        if description is not None and not isinstance(description, str):
            raise InvalidInput(f"{where} has a description that is not text.")
        if name in names:
            raise InvalidInput(f"{source} names category {name!r} twice (items {names[name]} and {i}).")
        if uid is not None and uid in uids:
            raise InvalidInput(f"{source} lists uid {uid} twice (items {uids[uid]} and {i}).")
        names[name] = i
        if uid is not None:
            uids[uid] = i
        items.append({"uid": uid, "name": name, "title": title, "description": description})
    return items


def import_categories(session: Session, *, items: list[dict[str, Any]], dry_run: bool, now: Any) -> dict[str, int]:
    """Upsert by uid, then by name. Idempotent. Refuses (nothing written) on a name clash."""
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    existing = list(session.exec(select(Category)).all())
    by_uid = {c.uid: c for c in existing}
    by_name = {c.name: c for c in existing}
    planned: list[tuple[Category | None, dict[str, Any]]] = []
    final_names = {c.uid: c.name for c in existing}
    for item in items:
        row = by_uid.get(item["uid"]) if item["uid"] is not None else None
        row = row or by_name.get(item["name"])
        uid = row.uid if row is not None else (item["uid"] or uuid.uuid4())
        final_names[uid] = item["name"]
        planned.append((row, {**item, "uid": uid}))
    seen: dict[str, uuid.UUID] = {}
    for uid, name in final_names.items():
        if name in seen:
            raise InvalidInput(f"Category name {name!r} would belong to both {seen[name]} and {uid}.")
        seen[name] = uid
    for row, item in planned:
        if row is None:
            counts["created"] += 1
            if not dry_run:
                session.add(
                    Category(
                        uid=item["uid"],
                        name=item["name"],
                        title=item["title"],
                        description=item["description"],
                        created_at=now,
                        updated_at=now,
                    )
                )
            continue
        fields = {"name": item["name"], "title": item["title"], "description": item["description"]}
        if all(getattr(row, k) == v for k, v in fields.items()):
            counts["unchanged"] += 1
            continue
        counts["updated"] += 1
        if not dry_run:
            for k, v in fields.items():
                setattr(row, k, v)
            row.updated_at = now
            session.add(row)
    session.flush()
    return counts


def list_categories(session: Session) -> list[Category]:
    return list(session.exec(select(Category).order_by(col(Category.name))).all())
