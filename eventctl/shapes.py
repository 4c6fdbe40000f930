"""The public shapes of an event, split by role from one set of field rules.

``EventCreate`` (POST, ``create``), ``EventUpdate`` (PUT, ``update``: every field
optional) and ``EventPublic`` (what leaves eventctl) share the field types below,
so a rule (a length, a range, the page-key form, no control characters) is
written once. Used by the writers and the web app; the read path never imports them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic import Field as PField

from eventctl.errors import InvalidInput
from eventctl.filters import RecordReviewFilters, describe_validation_error
from eventctl.models import DESCRIPTION_MAX, LIMIT_DEFAULT, LIMIT_MAX, LIMIT_MIN, NAME_MAX, Status
from eventctl.routes import MAX_ROUTE_LENGTH, require_route
from eventctl.text import check_text


def _name(value: Any) -> Any:
    if isinstance(value, str):
        value = check_text(value.strip(), what="the name")
        if not value:
            raise ValueError("must not be blank")
    return value


def _description(value: Any) -> Any:
    if isinstance(value, str):
        return check_text(value.strip(), what="the description", layout=True) or None
    return value


def _page(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return require_route(value)
        except InvalidInput as exc:
            raise ValueError(exc.message.rstrip(".")) from None
    return value


def _iso_only(value: Any) -> Any:
    # lax pydantic reads numbers as epoch seconds: a typo must not schedule a campaign in 1970
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 date-time with an offset")
    return value


def _in_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("is out of range once converted to UTC") from None


# the length rules sit on the string itself (after the trim), so pydantic counts characters, not "items";
# strict strings: bytes (a YAML !!binary) never become text after the checks on text ran
Name = Annotated[Annotated[StrictStr, PField(min_length=1, max_length=NAME_MAX)], BeforeValidator(_name)]
Description = Annotated[Annotated[StrictStr, PField(max_length=DESCRIPTION_MAX)] | None, BeforeValidator(_description)]
PageKey = Annotated[
    Annotated[StrictStr, PField(max_length=MAX_ROUTE_LENGTH)],
    BeforeValidator(_page),
    PField(examples=["/review/audio", "doc_digitization"]),
]
Limit = Annotated[StrictInt, PField(ge=LIMIT_MIN, le=LIMIT_MAX, description="Records per review request (1-100)")]
When = Annotated[AwareDatetime | None, BeforeValidator(_iso_only), AfterValidator(_in_utc)]


class EventBase(BaseModel):
    """The fields a user sets, each with its one rule (as the template's ``ItemBase``)."""

    name: Name
    page_context: PageKey
    description: Description = None
    filters: RecordReviewFilters = PField(default_factory=RecordReviewFilters)
    limit: Limit = LIMIT_DEFAULT
    is_active: StrictBool = True
    is_default: StrictBool = False
    start_date: When = None
    end_date: When = None


class EventCreate(EventBase):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _window(self) -> EventCreate:
        if self.start_date and self.end_date and self.end_date <= self.start_date:
            raise ValueError("end_date must be after start_date")
        return self


class EventUpdate(BaseModel):
    """Fields given are changed; an explicit null clears description/start/end/filters.

    Every field optional, with the same rule as in ``EventBase``.
    """

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    page_context: PageKey | None = None
    description: Description = None
    filters: RecordReviewFilters | None = None
    limit: Limit | None = None
    is_active: StrictBool | None = None
    is_default: StrictBool | None = None
    start_date: When = None
    end_date: When = None

    @model_validator(mode="after")
    def _not_null(self) -> EventUpdate:
        for key in ("name", "page_context", "limit", "is_active", "is_default"):
            if key in self.model_fields_set and getattr(self, key) is None:
                raise ValueError(f"{key} cannot be null")
        return self


class EventPublic(EventBase):
    """An event as it leaves eventctl (JSON, tables): the base, plus what eventctl sets; datetimes aware UTC."""

    model_config = ConfigDict(defer_build=True, json_schema_serialization_defaults_required=True)

    uid: uuid.UUID
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
