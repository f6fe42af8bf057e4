"""Every /v1/content result by id, so GET /v1/content/{id} answers after a restart.

Revision ID: 0004_content_results
Revises: 0003_support_assistant
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aigc_studio.store.models import UTCDateTime

revision = "0004_content_results"
down_revision = "0003_support_assistant"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "content_results",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), sa.ForeignKey("api_keys.id"), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
    )
    op.create_index("ix_content_results_created_at", "content_results", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_content_results_created_at", table_name="content_results")
    op.drop_table("content_results")
