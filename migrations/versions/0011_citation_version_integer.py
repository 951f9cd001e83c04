"""`citations.version` becomes an integer, as a document's version is everywhere else
(search results, the version registry, verified answers' policy references), so nothing
between the store and Slack converts it or guesses at text that is not a number.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every version ever stored is a document version (1 or more), written as digits.
    with op.batch_alter_table("citations") as batch:
        batch.alter_column(
            "version",
            existing_type=sa.String(64),
            type_=sa.Integer(),
            existing_nullable=False,
            postgresql_using="version::integer",
        )


def downgrade() -> None:
    with op.batch_alter_table("citations") as batch:
        batch.alter_column(
            "version",
            existing_type=sa.Integer(),
            type_=sa.String(64),
            existing_nullable=False,
            postgresql_using="version::text",
        )
