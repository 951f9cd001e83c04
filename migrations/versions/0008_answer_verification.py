"""What verification decided about each answer, and what it showed instead.

`answers.generated_text`: the model's own text before verification (the message keeps what
the person saw). `answers.verification`: the outcome ("passed", or the check that failed)
and what it found. `answers.quote`: the policy's own words shown with the answer. Rows
stored before this revision keep NULL: they were shown unverified.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("answers", sa.Column("generated_text", sa.Text(), nullable=True))
    op.add_column("answers", sa.Column("verification", sa.JSON(), nullable=True))
    op.add_column("answers", sa.Column("quote", sa.JSON(), nullable=True))


def downgrade() -> None:
    # SQLite drops a column only by copying the table; batch mode does that on both databases.
    with op.batch_alter_table("answers") as batch:
        batch.drop_column("quote")
        batch.drop_column("verification")
        batch.drop_column("generated_text")
