"""Stored logins (``eventctl login`` / ``logout``): one 0600 JSON file in the user config directory.

``{"logins": {NAME: {"url": URL, "token": TOKEN}}}``; the directory is 0700. The file is
replaced atomically (a new 0600 file renamed over the old one), so a crash never leaves a
half-written token file nor one readable by others.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from eventctl.errors import InvalidInput

FILE_NAME = "logins.json"


def logins_path() -> Path:
    from platformdirs import user_config_path

    return user_config_path("eventctl", appauthor=False) / FILE_NAME


def read_logins(path: Path | None = None) -> dict[str, dict[str, str]]:
    path = path or logins_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"Cannot read the stored logins {str(path)!r} ({type(exc).__name__}).") from None
    try:
        data = json.loads(text)
        logins = data["logins"]
        if not isinstance(logins, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("url"), str) and isinstance(v.get("token"), str)
            for v in logins.values()
        ):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(
            f"The stored logins {str(path)!r} are not eventctl's; remove the file and run 'eventctl login' again."
        ) from None
    return logins


def write_logins(logins: dict[str, dict[str, str]], path: Path | None = None) -> Path:
    path = path or logins_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".logins-", suffix=".tmp")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"logins": logins}, fh, indent=2)
            fh.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def find_login(*, name: str | None = None, url: str | None = None) -> tuple[str, dict[str, str]] | None:
    """The stored login called ``name``, or the one for ``url``."""
    logins = read_logins()
    if name is not None:
        found = logins.get(name)
        return (name, found) if found is not None else None
    for key, login in logins.items():
        if url is not None and login["url"] == url:
            return key, login
    return None


def store_login(name: str, url: str, token: str) -> Path:
    logins: dict[str, Any] = read_logins()
    logins = {k: v for k, v in logins.items() if k != name and v["url"] != url}
    logins[name] = {"url": url, "token": token}
    return write_logins(logins)


def remove_login(*, name: str | None, url: str | None) -> str | None:
    logins = read_logins()
    for key, login in logins.items():
        if key == name or (url is not None and login["url"] == url):
            del logins[key]
            write_logins(logins)
            return key
    return None
