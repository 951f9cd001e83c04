"""Feedback reason codes: the quick reasons picked in the 👎 modal, apart from the free text.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("feedback", sa.Column("reason_codes", sa.String(length=100), nullable=True))


def downgrade() -> None:
    # SQLite drops a column only by copying the table; batch mode does that on both databases.
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("reason_codes")
