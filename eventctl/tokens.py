"""Admin API tokens: shown once, stored only as a SHA-256 hash, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from eventctl.errors import Conflict, InvalidInput, NotFound, Unauthorized
from eventctl.models import ApiToken
from eventctl.timeparse import as_utc, isoformat

TOKEN_PREFIX = "evt_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_TOKEN = re.compile(r"^evt_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.match(name):
        raise InvalidInput("A token name is 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit.")
    return name


def create_token(session: Session, *, name: str, now: datetime) -> str:
    """Make a token; return it (the only time it exists in clear). Only its hash is stored."""
    name = check_name(name)
    existing = session.get(ApiToken, name)
    if existing is not None and existing.revoked_at is None:
        raise Conflict(f"A token named {name!r} already exists; revoke it first.", [])
    ident = secrets.token_hex(4)
    token = f"{TOKEN_PREFIX}{ident}_{secrets.token_urlsafe(32)}"
    if existing is not None:
        session.delete(existing)
        session.flush()
    session.add(ApiToken(name=name, prefix=f"{TOKEN_PREFIX}{ident}", token_hash=_hash(token), created_at=now))
    try:
        session.flush()
    except IntegrityError:  # another `token create NAME` committed between our read and our insert
        raise Conflict(f"A token named {name!r} already exists; revoke it first.", []) from None
    return token


def get_token(session: Session, *, name: str) -> ApiToken:
    row = session.get(ApiToken, check_name(name))
    if row is None:
        raise NotFound(f"No token is named {name.strip()[:100]!r}.")
    return row


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.exec(select(ApiToken).order_by(col(ApiToken.name))).all())


def revoke_token(session: Session, *, name: str, now: datetime) -> ApiToken:
    row = get_token(session, name=name)
    if row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
        session.flush()
    return row


def parse_bearer(header: str | None) -> str:
    """The token out of an Authorization header; anything malformed → Unauthorized."""
    if not header:
        raise Unauthorized("Missing bearer token.")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not token.isascii() or not _TOKEN.match(token):
        raise Unauthorized("Invalid bearer token.")
    return token


TOUCH_INTERVAL = timedelta(minutes=1)  # last_used_at is kept to the minute: not a write per request


def verify_token(session: Session, *, token: str, now: datetime) -> tuple[str, bool]:
    """The name of the active token, compared in constant time, and whether its ``last_used_at`` is
    older than ``TOUCH_INTERVAL`` (``touch_token`` then records the use); else Unauthorized."""
    match = _TOKEN.match(token)
    if not match:
        raise Unauthorized("Invalid bearer token.")
    row = session.exec(select(ApiToken).where(ApiToken.prefix == f"{TOKEN_PREFIX}{match.group(1)}")).first()
    expected = row.token_hash if row is not None else "0" * 64
    ok = hmac.compare_digest(expected.encode("ascii"), _hash(token).encode("ascii"))
    if row is None or not ok or row.revoked_at is not None:
        raise Unauthorized("Invalid bearer token.")
    last = as_utc(row.last_used_at)
    return row.name, last is None or now - last >= TOUCH_INTERVAL


def touch_token(session: Session, *, name: str, now: datetime) -> None:
    """Record a use (a short write that gives way at once to a writer holding the database)."""
    import sqlalchemy as sa

    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL lock_timeout = '100ms'"))
    session.execute(
        sa.update(ApiToken)
        .where(col(ApiToken.name) == name)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


def token_to_json(row: ApiToken) -> dict[str, Any]:
    return {
        "name": row.name,
        "prefix": row.prefix,
        "created_at": isoformat(row.created_at),
        "last_used_at": isoformat(row.last_used_at),
        "revoked_at": isoformat(row.revoked_at),
    }
