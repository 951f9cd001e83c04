"""Document audiences on answers and citations, so an answer is shown again (in the thread
history the model reads, on an escalation card) only where its documents may be read.

`answers.source_audiences`: the audiences of every document the prompt drew on, cited or
not. `citations.audience`: the audience of the cited document. Rows stored before this
revision keep NULL, which the bot treats as restricted.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("answers", sa.Column("source_audiences", sa.JSON(), nullable=True))
    op.add_column("citations", sa.Column("audience", sa.String(length=256), nullable=True))


def downgrade() -> None:
    # SQLite drops a column only by copying the table; batch mode does that on both databases.
    with op.batch_alter_table("citations") as batch:
        batch.drop_column("audience")
    with op.batch_alter_table("answers") as batch:
        batch.drop_column("source_audiences")
