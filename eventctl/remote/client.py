"""The HTTP edge of remote mode: which server, which token, and every way a network fails.

- The URL: ``http``/``https`` only, no user name or password in it; plain ``http`` only to a
  loopback host unless ``--insecure-http``. HTTPS is verified (``--ca-file`` for a private CA).
- The token: ``--token-file`` / ``EVENTCTL_API_TOKEN_FILE``, else ``EVENTCTL_API_TOKEN``, else the
  stored login (``eventctl login``). Never taken from argv, never printed: no message built
  here holds it, and one that is not printable ASCII is refused before httpx sees it.
- Requests: connect and read timeouts; idempotent ones (GET, PUT, DELETE) retried with
  exponential backoff on a dropped connection, a timeout or 502/503/504; a POST only when the
  connection was never made (nothing was sent), never after it may have reached the server.
- Answers: 401/403 → ``TokenRefused`` (exit 6); 5xx and network failures → ``ServerUnavailable``
  (exit 5) with the server's ``detail`` excerpted and escaped; 404/409/422 → the domain errors;
  anything that is not the API's JSON (a proxy's HTML page, a wrong shape) → ``NotContract``.
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventctl.errors import (
    Conflict,
    EventctlError,
    InvalidInput,
    NotContract,
    NotFound,
    OverlapConflict,
    ServerUnavailable,
    TokenRefused,
)
from eventctl.text import for_terminal

if TYPE_CHECKING:
    import httpx

    from eventctl.config import Settings

EVENTS_PATH = "/api/v1/events/"
SERVER_PATH = "/api/v1/events/server"  # answered by eventctl serve only: how the kind of server is told
RETRY_STATUSES = frozenset({502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
DETAIL_CHARS = 200
MAX_ANSWER_BYTES = 64 * 2**20  # a page of 200 events is at most ~15 MiB (filters ≤ 64 KiB each)
MAX_BACKOFF = 2.0
_TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")
_HTTP_HINT = re.compile(r"\s*Pass \?allow_overlap=true to allow it\.?\s*$")


@dataclass(frozen=True)
class Connection:
    """Where and how to talk: resolved once from the settings (flags > env > stored login)."""

    url: str  # the server's base URL, no trailing slash
    token: str | None = field(repr=False)
    token_source: str
    ca_file: str | None = None
    insecure_http: bool = False
    timeout: float = 30.0
    connect_timeout: float = 10.0
    retries: int = 3


def normalize_api_url(text: str, *, source: str, insecure_http: bool = False) -> str:
    """The base URL (``https://host[:port][/prefix]``); a URL ending in /api/v1[/events] is cut there."""
    import httpx

    raw = text.strip()
    bad = InvalidInput(f"{source} {for_terminal(raw[:100])!r} is not a URL such as https://events.example.org.")
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise bad from None
    if url.scheme not in ("http", "https") or not url.host or any(c.isspace() or not c.isprintable() for c in raw):
        raise bad
    if url.userinfo:
        raise InvalidInput(
            f"{source} must not hold a user name or password: give the token with EVENTCTL_API_TOKEN, "
            "--token-file or 'eventctl login'."
        )
    if url.scheme == "http" and not insecure_http and not is_loopback(url.host):
        raise InvalidInput(
            f"{source} is plain http:// to {for_terminal(url.host)}, which would send the token unencrypted; "
            "use https://, or pass --insecure-http (EVENTCTL_API_INSECURE_HTTP=1) on a network you trust."
        )
    path = url.path.rstrip("/")
    for suffix in ("/api/v1/events", "/api/v1"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return str(url.copy_with(path=path or "/", query=None, fragment=None)).rstrip("/")


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_token(token: str, *, source: str) -> str:
    """The token, or a refusal that names where it came from and never shows it."""
    token = token.strip()
    if not _TOKEN.fullmatch(token):
        raise InvalidInput(f"The token from {source} is not usable: a token is printable ASCII without spaces.")
    return token


def _read_token_file(path: str, *, source: str) -> str:
    try:
        with open(Path(path).expanduser(), "rb") as fh:
            data = fh.read(8193)
    except OSError as exc:
        raise InvalidInput(f"Cannot read {source} {for_terminal(path[:200])!r}: {exc.strerror or 'error'}.") from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        text = "\x00"  # refused by check_token without showing the bytes
    return check_token(text.strip().splitlines()[0] if text.strip() else "", source=f"{source} {path[:200]!r}")


def resolve_connection(settings: Settings) -> Connection:
    """The server and token of this run (SPEC §10). The database options are refused alongside."""
    from eventctl.remote.logins import find_login

    if settings.database_url:
        raise InvalidInput(
            "--api / EVENTCTL_API_URL and --database-url / EVENTCTL_DATABASE_URL cannot be used together: "
            "remote mode talks to a server, not a database; unset one of them."
        )
    login = None
    if settings.api_profile:
        login = find_login(name=settings.api_profile)
        if login is None:
            raise InvalidInput(
                f"No stored login is named {for_terminal(settings.api_profile[:60])!r}; "
                "run 'eventctl login --api URL --name NAME' first."
            )
    raw_url = settings.api_url or (login[1]["url"] if login else "")
    url = normalize_api_url(raw_url, source="--api", insecure_http=settings.api_insecure_http)
    if login is not None and login[1]["url"] != url:  # a stored token goes only to the server it was made for
        raise InvalidInput(
            f"The stored login {for_terminal(login[0][:60])!r} is for {for_terminal(login[1]['url'])}, "
            "not for --api / EVENTCTL_API_URL; give one of them."
        )
    if login is None:
        login = find_login(url=url)
    token: str | None
    if settings.api_token_file:
        token, source = _read_token_file(settings.api_token_file, source="--token-file"), "--token-file"
    elif settings.api_token:
        token, source = check_token(settings.api_token, source="EVENTCTL_API_TOKEN"), "EVENTCTL_API_TOKEN"
    elif login is not None:
        token, source = check_token(login[1]["token"], source=f"the stored login {login[0]!r}"), "the stored login"
    else:
        token, source = None, "nowhere"
    if settings.api_ca_file and not Path(settings.api_ca_file).expanduser().is_file():
        raise InvalidInput(f"--ca-file {for_terminal(settings.api_ca_file[:200])!r} is not a file.")
    return Connection(
        url=url,
        token=token,
        token_source=source,
        ca_file=settings.api_ca_file,
        insecure_http=settings.api_insecure_http,
        timeout=settings.api_timeout,
        connect_timeout=settings.api_connect_timeout,
        retries=settings.api_retries,
    )


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return for_terminal(flat[:DETAIL_CHARS] + ("…" if len(flat) > DETAIL_CHARS else ""))


def detail_of(response: httpx.Response) -> str:
    """The server's ``detail`` (FastAPI's shapes), else the start of its body: escaped, at most 200 chars."""
    try:
        body = response.json()
    except ValueError:
        return _excerpt(response.text) if response.text.strip() else ""
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return _excerpt(str(detail)) if detail is not None else ""


class ApiClient:
    """One httpx client for the run; ``request`` retries, ``check`` turns answers into domain errors."""

    def __init__(self, conn: Connection, *, transport: httpx.BaseTransport | None = None) -> None:
        import httpx

        from eventctl import __version__

        self.conn = conn
        verify: Any = True
        if conn.ca_file:
            import ssl

            verify = ssl.create_default_context(cafile=str(Path(conn.ca_file).expanduser()))
        headers = {"Accept": "application/json", "User-Agent": f"eventctl/{__version__}"}
        if conn.token:
            headers["Authorization"] = f"Bearer {conn.token}"
        self.http = httpx.Client(
            base_url=conn.url,
            headers=headers,
            timeout=httpx.Timeout(conn.timeout, connect=conn.connect_timeout),
            verify=verify,
            follow_redirects=False,  # a redirect is reported, never followed with the token
            transport=transport,
        )
        self._kind: str | None = None
        self.sleep = time.sleep
        self.last_attempts = 0  # of the last request: a DELETE answered 404 on a retry was done by the first

    def close(self) -> None:
        self.http.close()

    @property
    def shown(self) -> str:
        return for_terminal(self.conn.url)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, Any] | None = None,
    ) -> httpx.Response:
        import httpx

        idempotent = method in IDEMPOTENT
        last = self.conn.retries
        for attempt in range(last + 1):
            self.last_attempts = attempt + 1
            try:
                response = self._send(method, path, params=params, json=json, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing was sent: safe for any method
                if _is_tls(exc) or attempt == last:
                    raise self._network_failure(exc) from None
            except httpx.TransportError as exc:  # the request may have reached the server
                if not idempotent or attempt == last:
                    raise self._network_failure(exc, sent=not idempotent) from None
            else:
                if response.status_code in RETRY_STATUSES and idempotent and attempt < last:
                    response.close()
                else:
                    return response
            self.sleep(min(MAX_BACKOFF, 0.1 * 2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; its answer read whole, but never more than MAX_ANSWER_BYTES."""
        import httpx

        request = self.http.build_request(method, path, **kwargs)
        response = self.http.send(request, stream=True)
        try:
            body = bytearray()
            for chunk in response.iter_bytes():  # decoded: a compressed bomb is counted as it unpacks
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise NotContract(
                        f"{self.shown} answered {method} {for_terminal(path[:100])} with more than "
                        f"{MAX_ANSWER_BYTES // 2**20} MiB, which the events API never does."
                    )
        finally:
            response.close()
        dropped = ("content-length", "content-encoding", "transfer-encoding")
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in dropped]
        return httpx.Response(response.status_code, headers=headers, content=bytes(body), request=request)

    def _network_failure(self, exc: Exception, *, sent: bool = False) -> EventctlError:
        import httpx

        if _is_tls(exc):
            return ServerUnavailable(
                f"The TLS certificate of {self.shown} is not trusted; for a private CA pass --ca-file "
                "(EVENTCTL_API_CA_FILE).",
                cause=_excerpt(str(exc)),
            )
        if isinstance(exc, httpx.ConnectTimeout):
            what = f"did not accept a connection within {self.conn.connect_timeout:g} s"
        elif isinstance(exc, httpx.TimeoutException):
            what = f"did not answer within {self.conn.timeout:g} s"
        elif isinstance(exc, httpx.ConnectError):
            what = "cannot be reached"
        else:
            what = "dropped the connection"
        tail = " The request may have been carried out; check before sending it again." if sent else ""
        return ServerUnavailable(f"The server at {self.shown} {what}.{tail}", cause=_excerpt(type(exc).__name__))

    def check(self, response: httpx.Response, *, what: str) -> httpx.Response:
        """The response if it is a success; else the domain error its status means."""
        status = response.status_code
        if 200 <= status < 300:
            return response
        detail = detail_of(response) if _is_json(response) or status >= 500 else ""
        if status in (401, 403):
            hint = (
                "no token was given: set EVENTCTL_API_TOKEN, pass --token-file or run 'eventctl login --api URL'"
                if self.conn.token is None
                else f"check the token from {self.conn.token_source} (or run 'eventctl login --api URL' again)"
            )
            raise TokenRefused(f"Your token is not accepted by {self.shown} (HTTP {status}): {hint}.")
        if status >= 500:
            raise ServerUnavailable(
                f"The server at {self.shown} failed (HTTP {status}){': ' + detail if detail else ''}."
            )
        if 300 <= status < 400:
            where = _excerpt(response.headers.get("location", "elsewhere"))
            raise NotContract(
                f"{self.shown} redirects {what} to {where}; give that address with --api "
                "(a redirect is not followed with your token)."
            )
        if not _is_json(response):
            raise self.not_contract(response, what=what)
        if status == 404:
            raise NotFound(f"{detail or 'Not found'}.".replace("..", "."))
        if status == 409:
            body = response.json()
            uids = body.get("conflicting_uids") if isinstance(body, dict) else None
            uids = [str(u) for u in uids] if isinstance(uids, list) else []
            message = _HTTP_HINT.sub("", detail)
            if "allow_overlap" in detail:
                raise OverlapConflict(message, uids)
            raise Conflict(message if message.endswith(".") else message + ".", uids)
        if status in (400, 413, 422):
            raise InvalidInput(f"The server refused {what}: {detail or f'HTTP {status}'}.")
        raise self.not_contract(response, what=what)

    def not_contract(self, response: httpx.Response, *, what: str) -> NotContract:
        kind = response.headers.get("content-type", "no content type").split(";")[0].strip() or "no content type"
        return NotContract(
            f"{self.shown} answered {what} with HTTP {response.status_code} and {_excerpt(kind)}, which is not "
            "the events API: is --api the right address (not a proxy's or a login page)?"
        )

    def not_contract_shape(self, what: str, expected: str) -> NotContract:
        return NotContract(
            f"{self.shown} answered {what} with JSON that is not {expected}: is --api the right address?"
        )

    def json(self, method: str, path: str, *, what: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """A request whose success is JSON: the decoded body (None for 204)."""
        response = self.request(method, path, params=params, json=body)
        return self.decode(response, what=what)

    def decode(self, response: httpx.Response, *, what: str) -> Any:
        self.check(response, what=what)
        if response.status_code == 204:
            return None
        if not _is_json(response):
            raise self.not_contract(response, what=what)
        try:
            return response.json()
        except ValueError:
            raise self.not_contract(response, what=what) from None

    def kind(self) -> str:
        """``eventctl`` (an ``eventctl serve``) or ``platform`` (the platform's events API), asked once."""
        if self._kind is None:
            response = self.request("GET", SERVER_PATH)
            status = response.status_code
            if status in (401, 403) or status >= 500 or 300 <= status < 400:
                self.check(response, what="GET /api/v1/events/server")
            if not _is_json(response):
                raise self.not_contract(response, what="GET /api/v1/events/server")
            body = response.json()
            if status == 200 and isinstance(body, dict) and body.get("server") == "eventctl":
                self._kind = "eventctl"
            elif status in (404, 405, 422):  # the platform's /{event_id} refusing "server"
                self._kind = "platform"
            else:
                raise self.not_contract(response, what="GET /api/v1/events/server")
        return self._kind


def _is_json(response: httpx.Response) -> bool:
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _is_tls(exc: Exception) -> bool:
    import ssl

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
