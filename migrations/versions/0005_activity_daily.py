"""Daily activity counts that outlive `retention purge`: conversations, questions, answers,
votes and escalations (by trigger) per UTC day and adapter; and indexes on the escalation
columns that deleting messages and answers sets to NULL.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = (
    "conversations",
    "questions",
    "answers",
    "thumbs_up",
    "thumbs_down",
    "escalations",
    "escalations_button",
    "escalations_asked",
    "escalations_weak_evidence",
    "escalations_sensitive",
    "escalations_second_downvote",
)


def upgrade() -> None:
    op.create_table(
        "activity_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("adapter", sa.String(length=128), nullable=False),
        *(sa.Column(name, sa.Integer(), server_default="0", nullable=False) for name in _COUNTS),
        sa.PrimaryKeyConstraint("day", "adapter", name=op.f("pk_activity_daily")),
    )
    # Without them every deleted message or answer scans the escalations table. Measured
    # with 20,000 conversations and 4,000 escalations, a purge took 16 s instead of 0.7 s
    # on SQLite and 11 s instead of 3-4 s on PostgreSQL, and it grows with both counts.
    op.create_index(
        op.f("ix_escalations_question_message_id"), "escalations", ["question_message_id"]
    )
    op.create_index(op.f("ix_escalations_answer_id"), "escalations", ["answer_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_escalations_answer_id"), table_name="escalations")
    op.drop_index(op.f("ix_escalations_question_message_id"), table_name="escalations")
    op.drop_table("activity_daily")
