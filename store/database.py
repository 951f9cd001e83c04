"""The one engine and session factory of the app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, CursorResult, make_url
from sqlalchemy.orm import Session, sessionmaker


class Database:
    """Owns the engine; hands out sessions that commit on success and roll back on error."""

    def __init__(self, url: str | URL) -> None:
        self.url = make_url(url)
        self.engine = _create_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)


def changed_rows(result: object) -> int:
    """How many rows the UPDATE or DELETE that gave `result` changed."""
    # Session.execute is typed to return a plain Result whatever it runs; for an UPDATE or
    # DELETE it is a CursorResult, the only kind that has a rowcount.
    assert isinstance(result, CursorResult), f"not an UPDATE or DELETE result: {result!r}"
    return result.rowcount


def _create_engine(url: URL) -> Engine:
    # An error's message and log line would otherwise quote the row it could not write,
    # and rows hold what people typed.
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)

    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # Bolt runs listeners on worker threads, so the connection may cross threads.
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
    )
    event.listen(engine, "connect", _configure_sqlite_connection)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # SQLite ignores foreign keys unless asked; WAL lets readers run beside the writer.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
