"""Remote mode (SPEC §10): the CLI over HTTP, against an ``eventctl serve`` or the platform's events API.

``client`` is the HTTP edge (URL and token checks, timeouts, retries, errors), ``logins`` the
stored logins (``eventctl login``), ``backend`` the operations the commands call. httpx is
imported only when a remote command runs, never at import (``eventctl --help`` stays light).
"""
