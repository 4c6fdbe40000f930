"""Duration units are case-sensitive and closed: `6M` is not six minutes (nothing is removed)."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import count_rows, make_cli
from eventctl.errors import InvalidInput
from eventctl.timeparse import parse_duration, parse_time

UNITS = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
NOW = datetime(2030, 1, 31, 12, tzinfo=UTC)


@given(n=st.integers(0, 10_000), unit=st.sampled_from(sorted(UNITS)))
def test_every_documented_unit_means_what_it_says(n, unit):
    assert parse_duration(f"{n}{unit}") == n * UNITS[unit]
    assert parse_time(f"+{n}{unit}", now=NOW) == NOW + n * UNITS[unit]
    assert parse_time(f"-{n}{unit}", now=NOW) == NOW - n * UNITS[unit]


def _spells_a_unit(text: str) -> bool:
    """Text that, after a number, still reads as one: more digits, ASCII spaces, then s/m/h/d/w."""
    return re.fullmatch(r"[0-9]*[ \t\n\r\f\v]*[smhdw]", text.strip()) is not None


@given(n=st.integers(1, 10_000), unit=st.text(min_size=1, max_size=4).filter(lambda u: not _spells_a_unit(u)))
def test_any_other_unit_is_refused(n, unit):
    for text, parse in ((f"{n}{unit}", parse_duration), (f"+{n}{unit}", parse_time), (f"-{n}{unit}", parse_time)):
        try:
            parse(text) if parse is parse_duration else parse(text, now=NOW)
        except InvalidInput:
            continue
        raise AssertionError(f"{text!r} was accepted")


@pytest.mark.parametrize("unit", ["M", "S", "H", "D", "W", "Y", "y", "mo", "min", "ms", "µs", "٣d"])
def test_upper_case_and_other_units_name_the_accepted_forms(unit):
    with pytest.raises(InvalidInput, match="s, m, h, d, w"):
        parse_duration(f"6{unit}")
    with pytest.raises(InvalidInput):
        parse_time(f"+6{unit}", now=NOW)


def test_unicode_digits_are_not_numbers():
    with pytest.raises(InvalidInput):
        parse_duration("٣d")  # ARABIC-INDIC DIGIT THREE
    with pytest.raises(InvalidInput):
        parse_time("+٣h", now=NOW)


def _aged(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.mark.parametrize("older_than", ["6M", "1M", "7D", "2W"])
def test_cleanup_with_a_capital_unit_removes_nothing(older_than, db_url, tmp_path):
    cli = make_cli(db_url)
    assert cli("create", "--name", "ended", "--page", "/a", "--start", "-1h", "--end", "-10m").exit_code == 0
    upload = tmp_path / "up" / "ten_minutes_old.bin"
    _aged(upload, 600)
    r = cli("cleanup", "--older-than", older_than, "--uploads-dir", str(tmp_path / "up"))
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "s, m, h, d, w" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert count_rows(db_url) == 1 and upload.exists()


def test_retention_setting_with_a_capital_unit_is_refused(db_url, tmp_path):
    cli = make_cli(db_url)
    assert cli("create", "--name", "ended", "--page", "/a", "--start", "-1h", "--end", "-10m").exit_code == 0
    r = cli("cleanup", env={"EVENTCTL_RETENTION": "1M"})
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "EVENTCTL_RETENTION" in r.stderr and "s, m, h, d, w" in r.stderr
    assert count_rows(db_url) == 1


@pytest.mark.parametrize("flag", ["--end", "--start"])
def test_relative_times_with_a_capital_unit_are_refused(flag, db_url):
    cli = make_cli(db_url)
    r = cli("create", "--name", "n", "--page", "/a", flag, "+1M")
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "s, m, h, d, w" in r.stderr
    assert count_rows(db_url) == 0
