"""Categories known to eventctl, by the platform's own ids (SPEC §6).

Local table: ``import`` (a file) and ``pull`` (the platform's ``GET /api/v1/categories/``)
upsert by id; an entry without the platform's id is refused, since an event naming a
made-up id would send the review endpoint a category the platform has never seen.
``push`` seeds the platform from a seed file, as the platform's ``create_categories.py`` does.
Once any category is known, events may name only known ones.

httpx is imported inside the functions that talk to the platform, never at import.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, func, select

from eventctl.errors import EventctlError, InvalidInput, Unauthorized
from eventctl.models import Category
from eventctl.text import check_text, excerpt, for_terminal

if TYPE_CHECKING:
    import httpx

PLATFORM_PATH = "/api/v1/categories/"
TIMEOUT_SECONDS = 30.0
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # a categories file, a seed file, the platform's list
MAX_ERROR_BODY_BYTES = 64 * 1024  # what is read of a refusal to find its `detail`
NAME_MAX, TITLE_MAX = 200, 500
TOKEN_ENV = "EVENTCTL_PLATFORM_TOKEN"
ID_SOURCE = (
    "category ids are the platform's own: get them from its GET /api/v1/categories/ "
    "with 'eventctl categories pull --api URL' (a seed file without ids is for 'eventctl categories push')"
)
_TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")


# --- the known-category rule -------------------------------------------------------------------


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
        found = None
        if len(text) <= 200 and text.isprintable():  # no name holds more (or control characters, surrogates)
            found = session.exec(select(Category.uid).where(Category.name == text)).first()
        if found is None:
            raise InvalidInput(f"--category {excerpt(text)} is neither a UUID nor the name of a known category.")
        out.append(str(found))
    return out


def category_to_json(cat: Category) -> dict[str, Any]:
    return {"uid": str(cat.uid), "name": cat.name, "title": cat.title, "description": cat.description}


def list_categories(session: Session) -> list[Category]:
    return list(session.exec(select(Category).order_by(col(Category.name))).all())


# --- documents: a categories file, a seed file, the platform's answer ---------------------------


def _load_json(text: str | bytes, *, source: str) -> Any:
    """JSON text; a UTF-8 byte order mark at the start is skipped (Windows editors write one,
    and ``apply`` and the HTTP API accept it)."""
    if isinstance(text, str):
        text = text.removeprefix("\ufeff")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidInput(f"{source} is not valid JSON ({getattr(exc, 'msg', 'too deeply nested')}).") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{source} is not UTF-8 text.") from None


def _unwrap(data: Any, *, source: str, keys: tuple[str, ...] = ("categories",)) -> list[Any]:
    """A bare JSON array, or one wrapped as ``{"categories": [...]}``."""
    if isinstance(data, dict):
        for key in keys:
            if isinstance(data.get(key), list):
                return list(data[key])
    if not isinstance(data, list):
        wrapped = " or ".join(f'{{"{k}": [...]}}' for k in keys)
        raise InvalidInput(f"{source} must hold a JSON array of categories (or {wrapped}).")
    return data


def _text(value: Any, *, what: str, max_len: int | None = None, layout: bool = False) -> str:
    """Text from outside, refused (InvalidInput, one sentence) when it could not be stored or shown safely."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} is not text.")
    try:
        check_text(value, what=what, layout=layout)
    except ValueError as exc:
        raise InvalidInput(f"{exc}.") from None
    if max_len is not None and len(value) > max_len:
        raise InvalidInput(f"{what} is longer than {max_len} characters.")
    return value


def _entry_id(raw: dict[str, Any], *, where: str) -> uuid.UUID | None:
    """The entry's ``uid`` (eventctl's shape) or ``id`` (the platform's); None when it has neither."""
    refs = [raw.get(k) for k in ("uid", "id") if raw.get(k) not in (None, "")]
    if not refs:
        return None
    try:
        uids = {uuid.UUID(str(r)) for r in refs}
    except ValueError:
        bad = next(str(r) for r in refs if not _is_uuid(r))
        raise InvalidInput(f"{where} has an invalid uid {for_terminal(bad[:60])!r}.") from None
    if len(uids) > 1:
        raise InvalidInput(f"{where} has a uid and an id that differ.")
    return uids.pop()


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _entry_name(raw: dict[str, Any], *, where: str, max_len: int | None) -> str:
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{where} needs a name (non-empty text).")
    return _text(name, what=f"{where} name", max_len=max_len).strip()


def parse_category_entries(
    data: Any,
    *,
    source: str,
    keys: tuple[str, ...] = ("categories",),
    missing_id: str = ID_SOURCE,
) -> list[dict[str, Any]]:
    """Entries for the local table (uid, name, title, description), each with the platform's id.

    Accepts eventctl's shape (``uid``) and the platform's (``id``; ``published``, ``rank``,
    ``created_at`` … are ignored), bare or wrapped. Any refusal is one sentence (InvalidInput).
    """
    entries = _unwrap(data, source=source, keys=keys)
    items: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    uids: dict[uuid.UUID, int] = {}
    without_id: list[str] = []
    for i, raw in enumerate(entries):
        where = f"{source} item {i}"
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where} is not a JSON object.")
        uid = _entry_id(raw, where=where)
        name = _entry_name(raw, where=where, max_len=NAME_MAX)
        title = raw.get("title")
        title = name if title is None else _text(title, what=f"{where} title", max_len=TITLE_MAX)
        description = raw.get("description")
        if description is not None:
            description = _text(description, what=f"{where} description", layout=True)
        if name in names:
            raise InvalidInput(f"{source} names category {name!r} twice (items {names[name]} and {i}).")
        names[name] = i
        if uid is None:
            without_id.append(f"item {i} {name!r}")
            continue
        if uid in uids:
            raise InvalidInput(f"{source} lists uid {uid} twice (items {uids[uid]} and {i}).")
        uids[uid] = i
        items.append({"uid": uid, "name": name, "title": title, "description": description})
    if without_id:
        count = f"{len(without_id)} of {len(entries)} entries have" if len(without_id) > 1 else "an entry has"
        raise InvalidInput(
            f"{source}: {count} no id (first: {for_terminal(without_id[0])}), and nothing was imported; {missing_id}."
        )
    return items


def parse_category_document(text: str, *, source: str) -> list[dict[str, Any]]:
    """A categories file: eventctl's shape (uid) or the platform's export (id), bare or wrapped."""
    return parse_category_entries(_load_json(text, source=source), source=source)


def parse_seed_document(text: str, *, source: str) -> list[dict[str, Any]]:
    """A seed file for ``push``: the JSON bodies to POST, one per category.

    Each entry goes as written (``name``, ``title``, ``description``, ``published``, ``rank``, …),
    except that eventctl's ``uid`` is sent as the platform's ``id``. Only what the platform could
    not take at all is refused here (no name, text that is not text, a name twice); its own rules
    (lengths, types) are its to apply.
    """
    entries = _unwrap(_load_json(text, source=source), source=source)
    payloads: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    for i, raw in enumerate(entries):
        where = f"{source} item {i}"
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where} is not a JSON object.")
        uid = _entry_id(raw, where=where)
        name = _entry_name(raw, where=where, max_len=None)
        for key in ("title", "description"):
            if raw.get(key) is not None:
                _text(raw[key], what=f"{where} {key}", layout=key == "description")
        if name in names:
            raise InvalidInput(f"{source} names category {name!r} twice (items {names[name]} and {i}).")
        names[name] = i
        payload = {k: v for k, v in raw.items() if k not in ("uid", "id")}
        if uid is not None:
            payload = {"id": str(uid), **payload}
        payloads.append(payload)
    return payloads


# --- the local table ------------------------------------------------------------------------------


def import_categories(session: Session, *, items: list[dict[str, Any]], dry_run: bool, now: Any) -> dict[str, int]:
    """Upsert by uid. Idempotent. Refuses (nothing written) when a name would belong to two uids.

    Names may pass through each other (a swap, a rotation, a new category taking a name that a
    rename frees): only the final state must hold each name once. The dry run makes the same
    writes inside a savepoint and rolls them back, so it refuses whatever the real run refuses.
    """
    existing = list(session.exec(select(Category)).all())
    by_uid = {c.uid: c for c in existing}
    final_names = {c.uid: c.name for c in existing}
    for item in items:
        final_names[item["uid"]] = item["name"]
    seen: dict[str, uuid.UUID] = {}
    for uid, name in final_names.items():
        if name in seen:
            first, second = (seen[name], uid) if seen[name] in by_uid else (uid, seen[name])
            raise InvalidInput(
                f"Category name {name!r} would belong to both {first} (known here) and {second}; nothing was written."
            )
        seen[name] = uid
    if not dry_run:
        return _upsert(session, items=items, by_uid=by_uid, now=now)
    savepoint = session.begin_nested()
    try:
        return _upsert(session, items=items, by_uid=by_uid, now=now)
    finally:
        savepoint.rollback()
        session.expire_all()


def _upsert(
    session: Session, *, items: list[dict[str, Any]], by_uid: dict[uuid.UUID, Category], now: Any
) -> dict[str, int]:
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    renamed: list[tuple[Category, dict[str, Any]]] = []
    for item in items:
        row = by_uid.get(item["uid"])
        if row is None:
            continue
        fields = {"name": item["name"], "title": item["title"], "description": item["description"]}
        if all(getattr(row, k) == v for k, v in fields.items()):
            counts["unchanged"] += 1
            continue
        counts["updated"] += 1
        if row.name != item["name"]:
            # first out of the way: a name no category can hold (names refuse control characters),
            # unique by uid; the unique constraint is checked row by row, not at commit
            row.name = f"\x01{row.uid.hex}"
            session.add(row)
        renamed.append((row, fields))
    session.flush()
    for row, fields in renamed:
        for k, v in fields.items():
            setattr(row, k, v)
        row.updated_at = now
        session.add(row)
    session.flush()  # the renames land before any new category takes a name they freed
    for item in items:
        if item["uid"] not in by_uid:
            counts["created"] += 1
            session.add(Category(**item, created_at=now, updated_at=now))
    session.flush()
    return counts


# --- the platform's API ---------------------------------------------------------------------------


def resolve_token(given: str | None, configured: str | None, *, required: bool) -> str | None:
    """The bearer token: ``--token``, else EVENTCTL_PLATFORM_TOKEN (read when the command runs)."""
    for value, source in ((given, "--token"), (configured, TOKEN_ENV)):
        if value is None:
            continue
        token = value.strip()
        if not _TOKEN.fullmatch(token):
            raise InvalidInput(f"{source} is not a bearer token (printable ASCII without spaces).")
        return token
    if required:
        raise InvalidInput(
            f"No platform token: pass --token or set {TOKEN_ENV} (a platform admin's bearer token); nothing was sent."
        )
    return None


def categories_url(api: str) -> httpx.URL:
    """``<api>/api/v1/categories/`` (an ``api`` already ending in /api/v1 or /api/v1/categories is kept)."""
    import httpx

    text = api.strip()
    bad = InvalidInput(f"--api {for_terminal(text[:100])!r} is not a URL such as https://backend2.swecha.org.")
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise bad from None
    if url.scheme not in ("http", "https") or not url.host or any(c.isspace() for c in url.host):
        raise bad
    if url.userinfo:
        raise InvalidInput(f"--api must not hold a user name or password; give the token with --token or {TOKEN_ENV}.")
    path = url.path.rstrip("/")
    for suffix in ("/api/v1/categories", "/api/v1"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return url.copy_with(path=path + PLATFORM_PATH, query=None, fragment=None)


def shown(url: httpx.URL) -> str:
    """A URL as printed: no query, no user information."""
    return for_terminal(f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}")


def platform_transport() -> httpx.BaseTransport | None:
    """The transport to the platform: None means httpx's own (tests put an in-process stand-in here)."""
    return None


def _client(transport: httpx.BaseTransport | None) -> httpx.Client:
    import httpx

    return httpx.Client(
        transport=transport if transport is not None else platform_transport(),
        timeout=TIMEOUT_SECONDS,
        follow_redirects=False,  # a redirect is reported, not followed with the token
        headers={"Accept": "application/json", "User-Agent": "eventctl"},
    )


def _read_body(response: httpx.Response, *, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, and whether there was more."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def _network_failure(exc: Exception, url: httpx.URL) -> EventctlError:
    import httpx

    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        return EventctlError(f"Cannot reach the platform at {shown(url)}.", cause=reason)
    if isinstance(exc, httpx.TimeoutException):
        return EventctlError(f"The platform at {shown(url)} did not answer within {TIMEOUT_SECONDS:g} s.")
    return EventctlError(f"The request to {shown(url)} failed.", cause=f"{type(exc).__name__}: {reason}")


def fetch_platform_categories(
    api: str, *, token: str | None, transport: httpx.BaseTransport | None = None
) -> list[dict[str, Any]]:
    """The platform's categories (``GET /api/v1/categories/``), validated for the local table.

    Network failures and unexpected statuses are EventctlError (exit 1); 401/403 are Unauthorized.
    """
    import httpx

    url = categories_url(api)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with _client(transport) as client, client.stream("GET", url, headers=headers) as response:
            status = response.status_code
            location = response.headers.get("location")
            body, more = _read_body(response, limit=MAX_DOCUMENT_BYTES if status == 200 else MAX_ERROR_BODY_BYTES)
    except httpx.HTTPError as exc:
        raise _network_failure(exc, url) from None
    where = f"GET {shown(url)}"
    if status in (401, 403):
        fix = "the token was refused" if token else f"it needs a token (pass --token or set {TOKEN_ENV})"
        raise Unauthorized(f"The platform answered HTTP {status} to {where}: {fix}.")
    if status != 200:
        hint = ""
        if 300 <= status < 400 and location:
            hint = f" (a redirect to {for_terminal(location[:200])}; give that address as --api)"
        elif status == 404:
            hint = " (is --api the platform's base URL?)"
        raise EventctlError(f"The platform answered HTTP {status} to {where}{hint}.")
    if more:
        raise EventctlError(f"The platform's answer to {where} is larger than {MAX_DOCUMENT_BYTES // 1024} KiB.")
    source = f"the platform's answer to {where}"
    try:
        return parse_category_entries(
            _load_json(body, source=source),
            source=source,
            keys=("categories", "data"),
            missing_id="the platform must give every category its id",
        )
    except InvalidInput as exc:  # the platform's data, not the user's input: a failure, exit 1
        raise EventctlError(exc.message) from None


@dataclass(frozen=True)
class PushResult:
    """One POST of ``push``: the platform's answer to one category of the seed file."""

    name: str
    ok: bool
    status: int | None  # None: no HTTP answer (network failure, or not sent)
    message: str  # 201: the new id; else the platform's `detail`, `HTTP <code>`, or the network failure
    id: str | None = None

    def line(self) -> str:
        if self.ok:
            return f"Created category {self.name!r}" + (f" (id {self.id})." if self.id else ".")
        return f"Failed to create category {self.name!r}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "status": self.status, "message": self.message, "id": self.id}


def _detail(body: bytes) -> str | None:
    """The ``detail`` of a FastAPI error body, as short text (None when there is none)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    detail = data.get("detail") if isinstance(data, dict) else None
    if detail is None:
        return None
    text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:299] + "…"


def push_categories(
    api: str,
    payloads: list[dict[str, Any]],
    *,
    token: str,
    transport: httpx.BaseTransport | None = None,
) -> Iterator[PushResult]:
    """POST each payload to ``/api/v1/categories/``, yielding the platform's answer as it comes.

    201 = created; 400 = the platform's ``detail``; any other status = ``HTTP <code>``. A network
    failure fails that entry; when the platform cannot be reached at all, the rest are not sent.
    """
    import httpx

    url = categories_url(api)
    headers = {"Authorization": f"Bearer {token}"}
    unreachable: str | None = None
    with _client(transport) as client:
        for payload in payloads:
            name = str(payload["name"])
            if unreachable is not None:
                yield PushResult(name, False, None, f"not sent ({unreachable})")
                continue
            try:
                with client.stream("POST", url, json=payload, headers=headers) as response:
                    status = response.status_code
                    body, _ = _read_body(response, limit=MAX_ERROR_BODY_BYTES)
            except httpx.HTTPError as exc:
                failure = _network_failure(exc, url)
                if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                    unreachable = "the platform is unreachable"
                yield PushResult(name, False, None, failure.cli_message())
                continue
            if status == 201:
                created = _load_quietly(body)
                new_id = created.get("id") if isinstance(created, dict) else None
                yield PushResult(name, True, status, "created", str(new_id) if new_id is not None else None)
            elif status == 400:
                yield PushResult(name, False, status, _detail(body) or "Unknown error")
            else:
                yield PushResult(name, False, status, f"HTTP {status}")


def _load_quietly(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
