"""Tables (SQLModel) and the public shapes, split by role (Create / Update / Public)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic import Field as PField
from sqlmodel import Field, SQLModel

from eventctl.db import TZDateTime, json_type
from eventctl.errors import InvalidInput
from eventctl.filters import RecordReviewFilters, describe_validation_error
from eventctl.routes import MAX_ROUTE_LENGTH, require_route
from eventctl.timeparse import as_utc, isoformat

NAME_MAX = 200
DESCRIPTION_MAX = 2000
LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 1, 500, 20
Status = Literal["live", "scheduled", "expired", "inactive"]
STATUSES: tuple[str, ...] = ("live", "scheduled", "expired", "inactive")


class Event(SQLModel, table=True):
    __tablename__ = "events"

    uid: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=NAME_MAX)
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    page_context: str = Field(max_length=MAX_ROUTE_LENGTH, index=True)
    filters: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(json_type(), nullable=False))
    limit: int = Field(default=LIMIT_DEFAULT)
    is_active: bool = Field(default=True)
    start_date: datetime | None = Field(default=None, sa_type=TZDateTime)
    end_date: datetime | None = Field(default=None, sa_type=TZDateTime)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=TZDateTime)
    updated_at: datetime = Field(sa_type=TZDateTime)


class State(SQLModel, table=True):
    """One row: a counter bumped in the same transaction as every event write.

    Web workers poll it (at most once a second) to drop their /current cache.
    """

    __tablename__ = "eventctl_state"

    id: int = Field(default=1, primary_key=True)
    version: int = Field(default=0, sa_type=sa.BigInteger)


class _EventFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("name", mode="before", check_fields=False)
    @classmethod
    def _name(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                raise ValueError("must not be blank")
        return value

    @field_validator("page_context", mode="before", check_fields=False)
    @classmethod
    def _route(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return require_route(value)
            except InvalidInput as exc:
                raise ValueError(exc.message.rstrip(".")) from None
        return value

    @field_validator("description", mode="before", check_fields=False)
    @classmethod
    def _description(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("start_date", "end_date", mode="before", check_fields=False)
    @classmethod
    def _iso_only(cls, value: Any) -> Any:
        # lax pydantic reads numbers as epoch seconds: a typo must not schedule a campaign in 1970
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("must be an ISO 8601 date-time with an offset")
        return value


class EventCreate(_EventFields):
    name: str = PField(min_length=1, max_length=NAME_MAX)
    page_context: str = PField(max_length=MAX_ROUTE_LENGTH, examples=["/review/audio"])
    description: str | None = PField(default=None, max_length=DESCRIPTION_MAX)
    filters: RecordReviewFilters = PField(default_factory=RecordReviewFilters)
    limit: StrictInt = PField(default=LIMIT_DEFAULT, ge=LIMIT_MIN, le=LIMIT_MAX)
    is_active: StrictBool = True
    start_date: AwareDatetime | None = None
    end_date: AwareDatetime | None = None

    @model_validator(mode="after")
    def _window(self) -> EventCreate:
        if self.start_date and self.end_date and self.end_date <= self.start_date:
            raise ValueError("end_date must be after start_date")
        return self


class EventUpdate(_EventFields):
    """Fields given are changed; an explicit null clears description/start/end/filters."""

    name: str | None = PField(default=None, min_length=1, max_length=NAME_MAX)
    page_context: str | None = PField(default=None, max_length=MAX_ROUTE_LENGTH)
    description: str | None = PField(default=None, max_length=DESCRIPTION_MAX)
    filters: RecordReviewFilters | None = None
    limit: StrictInt | None = PField(default=None, ge=LIMIT_MIN, le=LIMIT_MAX)
    is_active: StrictBool | None = None
    start_date: AwareDatetime | None = None
    end_date: AwareDatetime | None = None

    @model_validator(mode="after")
    def _not_null(self) -> EventUpdate:
        for key in ("name", "page_context", "limit", "is_active"):
            if key in self.model_fields_set and getattr(self, key) is None:
                raise ValueError(f"{key} cannot be null")
        return self


class EventPublic(BaseModel):
    """An event as it leaves eventctl (JSON, tables): datetimes aware UTC."""

    model_config = ConfigDict(defer_build=True)

    uid: uuid.UUID
    name: str
    description: str | None
    page_context: str
    filters: RecordReviewFilters
    limit: int
    is_active: bool
    start_date: datetime | None
    end_date: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    status: Status


def validate_model(model: type[BaseModel], data: dict[str, Any], *, what: str = "event") -> Any:
    """Build a Create/Update shape; a ValidationError becomes one InvalidInput sentence."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc, prefix=what)) from None


def status_at(event: Event, at: datetime) -> Status:
    if not event.is_active:
        return "inactive"
    start, end = as_utc(event.start_date), as_utc(event.end_date)
    if start is not None and start > at:
        return "scheduled"
    if end is not None and end <= at:
        return "expired"
    return "live"


def event_to_json(event: Event, at: datetime) -> dict[str, Any]:
    """The one JSON shape of an event, used by the CLI's --json and by HTTP."""
    return {
        "uid": str(event.uid),
        "name": event.name,
        "description": event.description,
        "page_context": event.page_context,
        "filters": dict(event.filters or {}),
        "limit": event.limit,
        "is_active": event.is_active,
        "start_date": isoformat(event.start_date),
        "end_date": isoformat(event.end_date),
        "created_by": event.created_by,
        "created_at": isoformat(event.created_at),
        "updated_at": isoformat(event.updated_at),
        "status": status_at(event, at),
    }



def load_all_tables() -> type[SQLModel]:
    """Import every module that defines a table, so SQLModel.metadata is complete.

    Kept out of the import of this module so the read path only builds the tables it uses.
    """
    import eventctl.categories  # noqa: F401
    import eventctl.tokens  # noqa: F401

    return SQLModel
