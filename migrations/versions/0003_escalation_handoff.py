"""Escalation handoff: who asked, the question and draft, the on-call card, reminders; and
the effective date and link of each citation, which the card shows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from store.types import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "requested_by",
    "question_message_id",
    "answer_id",
    "card_channel",
    "card_ts",
    "reminders_sent",
    "last_reminded_at",
)


def upgrade() -> None:
    op.add_column("citations", sa.Column("effective_from", sa.Date(), nullable=True))
    op.add_column("citations", sa.Column("url", sa.String(length=1024), nullable=True))
    # Batch mode: SQLite adds foreign keys only by copying the table.
    with op.batch_alter_table("escalations") as batch:
        batch.add_column(sa.Column("requested_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("question_message_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("answer_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("card_channel", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("card_ts", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("reminders_sent", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("last_reminded_at", UTCDateTime(), nullable=True))
        batch.create_foreign_key(
            "fk_escalations_question_message_id_messages",
            "messages",
            ["question_message_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            "fk_escalations_answer_id_answers",
            "answers",
            ["answer_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("escalations") as batch:
        batch.drop_constraint("fk_escalations_answer_id_answers", type_="foreignkey")
        batch.drop_constraint("fk_escalations_question_message_id_messages", type_="foreignkey")
        for column in reversed(_COLUMNS):
            batch.drop_column(column)
    with op.batch_alter_table("citations") as batch:
        batch.drop_column("url")
        batch.drop_column("effective_from")
