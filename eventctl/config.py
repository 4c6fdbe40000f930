"""Settings, resolved when the CLI or the app starts — never at import time.

Precedence: command-line flags > process environment > an optional ``.env``
file in the working directory (or the file named by ``EVENTCTL_ENV_FILE``) >
defaults. This module reads nothing when imported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eventctl.errors import InvalidInput

ENV_PREFIX = "EVENTCTL_"


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None  # None → the embedded SQLite default
    tz: str | None = None
    actor: str | None = None
    cache_ttl: float = 30.0
    stale_grace: float = 300.0
    poll_interval: float = 1.0
    cors_origins: tuple[str, ...] = ()
    uploads_dir: str | None = None
    chunks_dir: str | None = None
    retention: str = "7d"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    data_dir: str | None = None

    @property
    def is_default_database(self) -> bool:
        return self.database_url is None

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{default_database_path(self.data_dir)}"

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


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

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number of seconds, not {raw!r}.") from None
    if value < minimum or value != value or value == float("inf"):
        raise InvalidInput(f"{name} must be a finite number ≥ {minimum:g}, not {raw!r}.")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, not {raw!r}.") from None
    if not minimum <= value <= maximum:
        raise InvalidInput(f"{name} must be between {minimum} and {maximum}, not {value}.")
    return value


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve settings now. ``overrides`` are command-line values (None = not given)."""
    real = dict(os.environ if environ is None else environ)
    env = {**_read_dotenv(real), **real}

    def get(name: str) -> str | None:
        value = env.get(ENV_PREFIX + name)
        return value if value not in (None, "") else None

    origins = tuple(o.strip().rstrip("/") for o in (get("CORS_ORIGINS") or "").split(",") if o.strip())
    settings = Settings(
        database_url=get("DATABASE_URL"),
        tz=get("TZ"),
        actor=get("ACTOR"),
        cache_ttl=_number(env, "EVENTCTL_CACHE_TTL", 30.0),
        stale_grace=_number(env, "EVENTCTL_STALE_GRACE", 300.0),
        poll_interval=_number(env, "EVENTCTL_POLL_INTERVAL", 1.0, minimum=0.05),
        cors_origins=origins,
        uploads_dir=get("UPLOADS_DIR"),
        chunks_dir=get("CHUNKS_DIR"),
        retention=get("RETENTION") or "7d",
        host=get("HOST") or "127.0.0.1",
        port=_integer(env, "EVENTCTL_PORT", 8000, minimum=0, maximum=65535),
        workers=_integer(env, "EVENTCTL_WORKERS", 1, minimum=1, maximum=64),
        data_dir=get("DATA_DIR"),
    )
    return settings.with_overrides(**overrides)


def default_actor(settings: Settings) -> str:
    """--created-by, else EVENTCTL_ACTOR, else the OS user."""
    if settings.actor:
        return settings.actor
    import getpass

    try:
        return getpass.getuser()  # LOGNAME, USER, LNAME, USERNAME, then the password database
    except Exception:  # noqa: BLE001 - none of those in a bare container
        return "unknown"
