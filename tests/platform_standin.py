"""An in-process stand-in of the corpus platform's two category endpoints, in its own shapes.

As the platform's ``app/api/v1/endpoints/categories.py`` has them:

- ``GET /api/v1/categories/`` (any signed-in user): 200, a bare JSON array of
  ``{id, name, title, description, published, rank, created_at, updated_at}``;
- ``POST /api/v1/categories/`` (admin): the body is a Category; 201 with the stored
  category (a new ``id`` unless one was given); 400 ``{"detail": "Category with this
  name already exists"}``; 422 in FastAPI's validation shape when a field is missing;
- no bearer token, or an unknown one: 401 ``{"detail": "Not authenticated"}``.

Served to httpx through ``httpx.MockTransport(standin.handle)``; ``fail`` makes the
POST of a given name answer some other status, as a broken platform would.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

PATH = "/api/v1/categories/"
STAMP = "2025-01-01T00:00:00"


@dataclass
class PlatformStandIn:
    tokens: set[str] = field(default_factory=lambda: {"admin-token"})
    categories: list[dict[str, Any]] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)  # name → status its POST answers
    requests: list[httpx.Request] = field(default_factory=list)
    get_answer: tuple[int, Any] | None = None  # overrides GET's answer (status, JSON body)

    def add(self, name: str, title: str | None = None, *, id: str | None = None, **extra: Any) -> dict[str, Any]:
        row = {
            "id": id or str(uuid.uuid4()),
            "name": name,
            "title": title if title is not None else name.title(),
            "description": None,
            "published": False,
            "rank": 0,
            "created_at": STAMP,
            "updated_at": STAMP,
            **extra,
        }
        self.categories.append(row)
        return row

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path != PATH:
            # FastAPI's redirect of the path without its slash, and 404 for anything else
            if request.url.path + "/" == PATH:
                return httpx.Response(307, headers={"location": str(request.url.copy_with(path=PATH))})
            return httpx.Response(404, json={"detail": "Not Found"})
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
            return httpx.Response(401, json={"detail": "Not authenticated"})
        if request.method == "GET":
            if self.get_answer is not None:
                status, body = self.get_answer
                return httpx.Response(status, json=body)
            return httpx.Response(200, json=self.categories)
        if request.method == "POST":
            return self._create(json.loads(request.content))
        return httpx.Response(405, json={"detail": "Method Not Allowed"})

    def _create(self, body: Any) -> httpx.Response:
        missing = [k for k in ("name", "title") if not isinstance(body, dict) or k not in body]
        if missing:
            return httpx.Response(
                422,
                json={
                    "detail": [
                        {"type": "missing", "loc": ["body", k], "msg": "Field required", "input": body} for k in missing
                    ]
                },
            )
        if body["name"] in self.fail:
            return httpx.Response(self.fail[body["name"]], text="Internal Server Error")
        if any(c["name"] == body["name"] for c in self.categories):
            return httpx.Response(400, json={"detail": "Category with this name already exists"})
        fields = {k: body[k] for k in ("description", "published", "rank") if k in body}
        row = self.add(body["name"], body["title"], id=body.get("id"), **fields)
        return httpx.Response(201, json=row)

    @property
    def posted(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests if r.method == "POST"]
