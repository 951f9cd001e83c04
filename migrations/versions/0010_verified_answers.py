"""`verified_answers`: people's answers from resolved escalations, reused for the same
question; `answers.verified_answer_id` records which one an answer gave.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from store.types import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "verified_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("escalation_id", sa.Integer(), nullable=True),
        sa.Column("audience", sa.String(length=256), nullable=False),
        sa.Column("policy_refs", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "stale",
                "retired",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("reviewed_at", UTCDateTime(), nullable=True),
        sa.Column("reviewed_by", sa.String(length=64), nullable=True),
        sa.Column("reuse_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_reused_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["escalation_id"],
            ["escalations.id"],
            name=op.f("fk_verified_answers_escalation_id_escalations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verified_answers")),
    )
    op.create_index(
        op.f("ix_verified_answers_escalation_id"), "verified_answers", ["escalation_id"]
    )
    op.create_index(
        "ix_verified_answers_status_created", "verified_answers", ["status", "created_at"]
    )
    with op.batch_alter_table("answers") as batch:
        batch.add_column(sa.Column("verified_answer_id", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_answers_verified_answer_id"), ["verified_answer_id"])


def downgrade() -> None:
    with op.batch_alter_table("answers") as batch:
        batch.drop_index(batch.f("ix_answers_verified_answer_id"))
        batch.drop_column("verified_answer_id")
    op.drop_index("ix_verified_answers_status_created", table_name="verified_answers")
    op.drop_index(op.f("ix_verified_answers_escalation_id"), table_name="verified_answers")
    op.drop_table("verified_answers")
