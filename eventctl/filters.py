"""RecordReviewFilters: the review filters an event hands to its page (SPEC §1).

Serialization is explicit and JSON-safe (UUID → str, enum → value, date → ISO);
keys that are unset are omitted; unknown keys are rejected so that a typo
cannot silently widen a campaign.
"""

from __future__ import annotations

import json
import re
from datetime import date
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from eventctl.errors import InvalidInput

_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


class MediaType(StrEnum):
    text = "text"
    audio = "audio"
    video = "video"
    image = "image"


class ReleaseRights(StrEnum):
    creator = "creator"
    family_or_friend = "family_or_friend"
    downloaded = "downloaded"


class ExtractionType(StrEnum):
    manual = "manual"
    ocr = "ocr"
    asr = "asr"


class RecordReviewFilters(BaseModel):
    """Which records the review page fetches. All keys optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category_ids: list[UUID] | None = None
    media_type: MediaType | None = None
    release_rights: ReleaseRights | None = None
    extraction_type: ExtractionType | None = None
    published_date: date | None = None
    language: str | None = None

    @field_validator("category_ids")
    @classmethod
    def _dedupe(cls, value: list[UUID] | None) -> list[UUID] | None:
        if value is None:
            return None
        return list(dict.fromkeys(value))

    @field_validator("published_date", mode="before")
    @classmethod
    def _iso_date_only(cls, value: Any) -> Any:
        if value is None or isinstance(value, date):
            return value
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            raise ValueError("must be an ISO date YYYY-MM-DD")
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().lower()
        if not _LANGUAGE.fullmatch(code):
            raise ValueError("must be an ISO 639 code of 2 or 3 letters, e.g. 'te' or 'en'")
        return code

    def to_json(self) -> dict[str, Any]:
        """The JSON-safe dict that is persisted and sent; unset keys are omitted."""
        return self.model_dump(mode="json", exclude_none=True)


def describe_validation_error(exc: ValidationError, *, prefix: str = "filters") -> str:
    """One sentence out of a pydantic ValidationError."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "__root__")
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
    return f"Invalid {prefix}: " + "; ".join(parts) + "."


def parse_filters(data: Any) -> RecordReviewFilters:
    """Validate a dict (from JSON, the CLI or HTTP) into RecordReviewFilters."""
    if data is None:
        return RecordReviewFilters()
    if not isinstance(data, dict):
        raise InvalidInput("Invalid filters: expected a JSON object.")
    try:
        return RecordReviewFilters.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from None


def parse_filters_json(text: str, *, source: str = "--filters") -> RecordReviewFilters:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = getattr(exc, "msg", "too deeply nested")
        raise InvalidInput(f"{source} is not valid JSON ({msg}).") from None
    return parse_filters(data)


def filters_json_schema() -> dict[str, Any]:
    return RecordReviewFilters.model_json_schema()
