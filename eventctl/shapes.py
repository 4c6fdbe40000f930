"""The public shapes of an event, split by role: Create / Update / Public.

Used by the CLI's writers and the web app; the read path never imports them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

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

from eventctl.errors import InvalidInput
from eventctl.filters import RecordReviewFilters, describe_validation_error
from eventctl.models import DESCRIPTION_MAX, LIMIT_DEFAULT, LIMIT_MAX, LIMIT_MIN, NAME_MAX, Status
from eventctl.routes import MAX_ROUTE_LENGTH, require_route


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
