"""Fixtures for the store tests: each backend, and fresh databases on the test PostgreSQL server.

`make test` (and CI) start a throwaway PostgreSQL on loopback (`.ci/postgres`) and pass its URL
in TUNERY_TEST_DATABASE_URL. There the PostgreSQL tests must run: without the URL they fail.
A local `pytest tests/store` without it skips them, saying how to get a server.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import urlsplit, urlunsplit

import pytest

from tunery.store import open_store

URL_ENV = "TUNERY_TEST_DATABASE_URL"
HOW = "run `make postgres` and export TUNERY_TEST_DATABASE_URL=$(cat /tmp/tunery-test-postgres/url)"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of the test server's maintenance database."""
    url = os.environ.get(URL_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{URL_ENV} is not set: CI must test the PostgreSQL store ({HOW})")
        pytest.skip(f"no PostgreSQL test server: {HOW}")
    return url


@pytest.fixture
def make_database(postgres_server):
    """Factory: a new empty database on the test server → its URL; dropped at the end."""
    import psycopg

    created = []

    def make() -> str:
        name = "tunery_test_" + secrets.token_hex(6)
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        created.append(name)
        return urlunsplit(urlsplit(postgres_server)._replace(path="/" + name))

    yield make
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        for name in created:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request, tmp_path) -> str:
    """Where a fresh store lives: a SQLite file path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "t.db")
    return request.getfixturevalue("make_database")()


@pytest.fixture
def store(store_location):
    s = open_store(store_location)
    yield s
    s.close()
