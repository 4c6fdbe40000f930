"""pytest-alembic's built-in migration tests, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from pytest_alembic.tests import (  # noqa: F401 - collected as tests here
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

from conftest import BACKENDS


@pytest.fixture
def alembic_config():
    from eventctl.migrate import migrations_dir

    return {"script_location": str(migrations_dir())}


@pytest.fixture(params=BACKENDS)
def alembic_engine(request, tmp_path):
    from eventctl.db import make_engine

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'pytest-alembic.db'}"
    else:
        url = request.getfixturevalue("pg_server").create()
    engine = make_engine(url)
    yield engine
    engine.dispose()
