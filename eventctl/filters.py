"""RecordReviewFilters: the platform's own review filters, verbatim (SPEC §1).

The shape (key names, list-ness, enum values, the platform's spelling
``extration``) is the corpus platform's request model for its record-review
endpoint, so filters made here are ones the platform accepts and vice versa.
eventctl is stricter in two ways only: unknown keys are refused (a typo must
not silently widen a campaign) and JSON types are strict (``"lock": "yes"`` or
``"media_type": "audio"`` are refused, not coerced).

Serialization is explicit and JSON-safe (UUID → str, enum → value, date → ISO);
keys that are unset are omitted.
"""

from __future__ import annotations

import json
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from eventctl.errors import InvalidInput
from eventctl.text import check_text

MAX_FILTERS_BYTES = 64 * 1024  # filters serialized (and a --filters file) larger than this are not a filter set
_KIB = f"{MAX_FILTERS_BYTES // 1024} KiB"


class MediaType(StrEnum):
    text = "text"
    audio = "audio"
    video = "video"
    image = "image"
    document = "document"


class ReleaseRights(StrEnum):
    creator = "creator"
    others = "others"
    downloaded = "downloaded"
    NA = "NA"


class ExtractionType(StrEnum):
    ocr = "ocr"
    asr = "asr"
    caption = "caption"
    manual = "manual"


# what a list item may be: a non-blank string without control characters, at most 100 chars
_Language = Annotated[StrictStr, Field(min_length=1, max_length=100)]


class RecordReviewFilters(BaseModel):
    """Which records the review page fetches (the platform's RecordReviewFilters). All keys optional."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    language: list[_Language] | None = Field(default=None, description='Languages, e.g. ["Telugu"] (each trimmed)')
    media_type: list[MediaType] | None = Field(default=None, description="Media types (any of them)")
    category_ids: list[UUID] | None = Field(
        default=None, description="Category ids (any of them); de-duplicated, order kept"
    )
    source_label: StrictStr | None = Field(default=None, max_length=200, description="Source label")
    release_rights: ReleaseRights | None = Field(default=None, description="Release rights")
    published_date: date | None = Field(default=None, description="Published date, YYYY-MM-DD")
    is_fully_proofread: StrictBool | None = Field(default=None, description="Fully proofread (true) or not (false)")
    is_fully_validated: StrictBool | None = Field(default=None, description="Fully validated (true) or not (false)")
    extraction_type: ExtractionType | None = Field(default=None, description="Extraction type")
    model_name: StrictStr | None = Field(default=None, max_length=100, description="Model name")
    version: Literal["initial", "latest"] | None = Field(default=None, description="'initial' (version 0) or 'latest'")
    lock: StrictBool | None = Field(default=None, description="Lock returned records for the reviewer")
    extration: StrictBool | None = Field(
        default=None, description="Records needing extraction (the platform's own spelling of this key)"
    )

    @field_validator("language", mode="before")
    @classmethod
    def _languages(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [check_text(v.strip(), what="a language") if isinstance(v, str) else v for v in value]
        return value

    @field_validator("source_label", "model_name", mode="before")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        return check_text(value, what="the text") if isinstance(value, str) else value

    @field_validator("media_type", mode="before")
    @classmethod
    def _media(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_enum(MediaType, v) for v in value]
        return value

    @field_validator("release_rights", mode="before")
    @classmethod
    def _rights(cls, value: Any) -> Any:
        return _enum(ReleaseRights, value)

    @field_validator("extraction_type", mode="before")
    @classmethod
    def _extraction(cls, value: Any) -> Any:
        return _enum(ExtractionType, value)

    @field_validator("published_date", mode="before")
    @classmethod
    def _iso_date_only(cls, value: Any) -> Any:
        if value is None or isinstance(value, date):
            return value
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError("must be an ISO date YYYY-MM-DD")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO date YYYY-MM-DD") from None

    @field_validator("category_ids", mode="before")
    @classmethod
    def _uuids(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for item in value:
            if isinstance(item, str):
                try:
                    item = UUID(item)
                except ValueError:
                    raise ValueError(f"{item[:40]!r} is not a UUID") from None
            out.append(item)
        if not all(isinstance(item, UUID) for item in out):
            return out  # pydantic refuses the rest with a 422 / exit 2
        return list(dict.fromkeys(out))

    @model_validator(mode="before")
    @classmethod
    def _bounded_lists(cls, value: Any) -> Any:
        # before any per-item work: a list this long cannot serialize within MAX_FILTERS_BYTES
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, list) and len(item) > MAX_FILTERS_BYTES // 4:
                    raise ValueError(f"{str(key)[:40]} has {len(item):,} items; filters are at most {_KIB} serialized")
        return value

    @model_validator(mode="after")
    def _bounded(self) -> RecordReviewFilters:
        size = len(json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")).encode())
        if size > MAX_FILTERS_BYTES:
            raise ValueError(f"the filters take {size:,} bytes serialized; at most {_KIB}")
        return self

    def to_json(self) -> dict[str, Any]:
        """The JSON-safe dict that is persisted and sent; unset keys are omitted."""
        return self.model_dump(mode="json", exclude_none=True)


FILTER_KEYS: tuple[str, ...] = tuple(RecordReviewFilters.model_fields)


def _enum(kind: type[StrEnum], value: Any) -> Any:
    """JSON strings → enum members (strict mode takes no str for an enum); other types fail as usual."""
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in kind)
            raise ValueError(f"{value[:40]!r} is not one of {allowed}") from None
    return value


def describe_validation_error(exc: ValidationError, *, prefix: str = "filters") -> str:
    """One sentence out of a pydantic ValidationError (input excerpts kept short)."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "__root__")
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc[:60]!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
    return f"Invalid {prefix}: " + "; ".join(parts[:5]) + ("; …" if len(parts) > 5 else "") + "."


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
    from eventctl.documents import load_json

    return parse_filters(load_json(text, source=source))


def filters_json_schema() -> dict[str, Any]:
    return RecordReviewFilters.model_json_schema()
