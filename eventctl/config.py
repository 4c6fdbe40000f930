"""Settings, resolved and validated once when the CLI or the app starts — never at import.

Precedence: command-line flags > process environment > an optional ``.env``
file in the working directory (or the file named by ``EVENTCTL_ENV_FILE``) >
defaults. Every setting is parsed into its real type here (a zone, a duration,
a port), and an error names where the bad value came from (``EVENTCTL_TZ`` or
``--tz``). This module reads nothing when imported.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, timedelta, tzinfo
from pathlib import Path
from typing import Any

from eventctl.errors import InvalidInput

ENV_PREFIX = "EVENTCTL_"
# the resolved settings handed from `eventctl serve` to its worker processes (see web.app.app_from_env)
SERVE_SETTINGS_VAR = "EVENTCTL_INTERNAL_SERVE_SETTINGS"


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None  # None → the embedded SQLite default
    tz: tzinfo = UTC
    actor: str | None = None
    cache_ttl: float = 30.0
    cache_pages: int = 100_000  # pages held per worker, ~0.5 KB each (web.current)
    stale_grace: float = 300.0
    poll_interval: float = 1.0
    cors_origins: tuple[str, ...] = ()
    uploads_dir: str | None = None
    chunks_dir: str | None = None
    retention: timedelta = timedelta(days=7)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    data_dir: str | None = None
    metrics_public: bool = False
    platform_token: str | None = None
    log_format: str = "text"
    # deployment shapes (SPEC §11): LISTEN on a direct session connection when the database URL goes
    # through a transaction-mode pooler; /current loads and the counter poll from a hot-standby replica
    listen_url: str | None = None
    read_database_url: str | None = None
    # remote mode (eventctl.remote): the CLI over HTTP instead of a database
    api_url: str | None = None
    api_profile: str | None = None
    api_token: str | None = field(default=None, repr=False)  # never in a repr, a log or serve's hand-over
    api_token_file: str | None = None
    api_ca_file: str | None = None
    api_insecure_http: bool = False
    api_timeout: float = 30.0
    api_connect_timeout: float = 10.0
    api_retries: int = 3

    server: str | None = None  # `serve`'s ASGI server: granian | uvicorn; None → granian where installed

    @property
    def is_remote(self) -> bool:
        return bool(self.api_url or self.api_profile)

    @property
    def is_default_database(self) -> bool:
        return self.database_url is None

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{default_database_path(self.data_dir)}"

    def to_json(self) -> str:
        """For `serve`'s worker processes: the already-validated values."""
        data = asdict(self)
        data["api_token"] = None
        data["tz"] = str(self.tz)
        data["retention"] = self.retention.total_seconds()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        from eventctl.timeparse import get_zone

        data = json.loads(text)
        data["tz"] = get_zone(data["tz"])
        data["retention"] = timedelta(seconds=data["retention"])
        data["cors_origins"] = tuple(data["cors_origins"])
        return cls(**data)


def default_database_path(data_dir: str | None = None) -> Path:
    if data_dir:
        return Path(data_dir) / "eventctl.db"
    from platformdirs import user_data_path

    return user_data_path("eventctl", appauthor=False) / "eventctl.db"


def _read_dotenv(environ: Mapping[str, str]) -> dict[str, str]:
    path = Path(environ.get("EVENTCTL_ENV_FILE") or ".env")
    if not path.is_file():
        if "EVENTCTL_ENV_FILE" in environ:
            raise InvalidInput(f"EVENTCTL_ENV_FILE names {str(path)!r}, which is not a file.")
        return {}
    from dotenv import dotenv_values

    try:
        return {k: v for k, v in dotenv_values(path).items() if v is not None}
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"Cannot read the .env file {str(path)!r} ({type(exc).__name__}).") from None


# ---------------------------------------------------------------- parsers: (raw text, source name) → value


def _text(raw: str, source: str) -> str:
    from eventctl.text import check_text

    try:
        return check_text(raw, what=source)
    except ValueError as exc:
        raise InvalidInput(f"{exc}.") from None


def _seconds(minimum: float) -> Callable[[str, str], float]:
    def parse(raw: str, source: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInput(f"{source} must be a number of seconds, not {raw[:40]!r}.") from None
        if not math.isfinite(value) or value < minimum:
            raise InvalidInput(f"{source} must be a finite number ≥ {minimum:g}, not {raw[:40]!r}.")
        return value

    return parse


def _whole(minimum: int, maximum: int) -> Callable[[str, str], int]:
    def parse(raw: str, source: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise InvalidInput(f"{source} must be a whole number, not {raw[:40]!r}.") from None
        if not minimum <= value <= maximum:
            raise InvalidInput(f"{source} must be between {minimum} and {maximum}, not {value}.")
        return value

    return parse


def _zone(raw: str, source: str) -> tzinfo:
    from eventctl.timeparse import get_zone

    try:
        return get_zone(raw)
    except InvalidInput as exc:
        raise InvalidInput(f"{source}: {exc.message}") from None


def _duration(raw: str, source: str) -> timedelta:
    from eventctl.timeparse import parse_duration

    return parse_duration(raw, what=source)


def _flag(raw: str, source: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise InvalidInput(f"{source} must be 1/0, true/false, yes/no or on/off, not {raw[:40]!r}.")


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(raw: str, source: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise InvalidInput(f"{source} must be one of {', '.join(allowed)}, not {raw[:40]!r}.")
        return value

    return parse


def _origins(raw: str, source: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in _text(raw, source).split(",") if o.strip())
    for origin in origins:
        if origin != "*" and "://" not in origin:
            raise InvalidInput(f"{source} holds {origin[:60]!r}, which is not an origin such as https://example.org.")
    return origins


def _secret(raw: str, source: str) -> str:
    """A token: kept as given (checked when used, by eventctl.remote, in a message that never shows it)."""
    return raw


# field → (environment variable without the prefix, parser); flags reuse the parser with their own name
_PARSERS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "database_url": ("DATABASE_URL", _text),
    "tz": ("TZ", _zone),
    "actor": ("ACTOR", _text),
    "cache_ttl": ("CACHE_TTL", _seconds(0)),
    "cache_pages": ("CACHE_PAGES", _whole(1, 10_000_000)),
    "stale_grace": ("STALE_GRACE", _seconds(0)),
    "poll_interval": ("POLL_INTERVAL", _seconds(0.05)),
    "cors_origins": ("CORS_ORIGINS", _origins),
    "uploads_dir": ("UPLOADS_DIR", _text),
    "chunks_dir": ("CHUNKS_DIR", _text),
    "retention": ("RETENTION", _duration),
    "host": ("HOST", _text),
    "port": ("PORT", _whole(0, 65535)),
    "workers": ("WORKERS", _whole(1, 64)),
    "data_dir": ("DATA_DIR", _text),
    "metrics_public": ("METRICS_PUBLIC", _flag),
    "platform_token": ("PLATFORM_TOKEN", _text),
    "log_format": ("LOG_FORMAT", _choice("text", "json")),
    "listen_url": ("LISTEN_URL", _text),
    "read_database_url": ("READ_DATABASE_URL", _text),
    "api_url": ("API_URL", _text),
    "api_profile": ("API_PROFILE", _text),
    "api_token": ("API_TOKEN", _secret),
    "api_token_file": ("API_TOKEN_FILE", _text),
    "api_ca_file": ("API_CA_FILE", _text),
    "api_insecure_http": ("API_INSECURE_HTTP", _flag),
    "api_timeout": ("API_TIMEOUT", _seconds(0.1)),
    "api_connect_timeout": ("API_CONNECT_TIMEOUT", _seconds(0.1)),
    "api_retries": ("API_RETRIES", _whole(0, 10)),
    "server": ("SERVER", _choice("granian", "uvicorn")),
}
assert set(_PARSERS) == {f.name for f in fields(Settings)}


def environment_variables() -> list[str]:
    """Every variable eventctl reads (the README documents each; tests check that)."""
    return sorted({ENV_PREFIX + env for env, _ in _PARSERS.values()} | {"EVENTCTL_ENV_FILE"})


def load_settings(environ: Mapping[str, str] | None = None, **flags: Any) -> Settings:
    """Resolve settings now. ``flags`` are command-line values, keyed by field, as (flag name, raw text)
    pairs or already-typed values; None means "not given"."""
    real = dict(os.environ if environ is None else environ)
    env = {**_read_dotenv(real), **real}
    values: dict[str, Any] = {}
    for name, (var, parse) in _PARSERS.items():
        raw = env.get(ENV_PREFIX + var)
        if raw not in (None, ""):
            values[name] = parse(raw, ENV_PREFIX + var)
    settings = Settings(**values)
    return override(settings, **flags)


def override(settings: Settings, **flags: Any) -> Settings:
    """Settings with command-line values on top: ``name=(flag, raw text)`` is parsed, naming the flag."""
    values: dict[str, Any] = {}
    for name, given in flags.items():
        if given is None:
            continue
        if isinstance(given, tuple):
            flag, raw = given
            if raw is None:
                continue
            values[name] = _PARSERS[name][1](raw, flag)
        else:
            values[name] = given
    return replace(settings, **values) if values else settings


def default_actor(settings: Settings, given: str | None = None) -> str:
    """--created-by, else EVENTCTL_ACTOR, else the OS user."""
    if given is not None and given.strip():
        return _text(given.strip(), "--created-by")
    if settings.actor:
        return settings.actor
    import getpass

    try:
        return getpass.getuser()  # LOGNAME, USER, LNAME, USERNAME, then the password database
    except Exception:  # noqa: BLE001 - none of those in a bare container
        return "unknown"
