"""A private PostgreSQL schema, so tests never see each other's rows or tables."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@contextmanager
def private_schema(admin_url: str) -> Iterator[str]:
    """The URL of a new, empty schema on the server at `admin_url`; dropped on exit."""
    schema_name = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema_name}"'))
    url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema_name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema_name}" CASCADE'))
        admin.dispose()
