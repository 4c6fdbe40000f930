"""eventctl: page-scoped, time-bound review campaigns ("events")."""

__version__ = "0.1.0"
