"""Initial schema: API keys, the audit log with its output hashes, the content library.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aigc_studio.store.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("rate_limit_per_minute", sa.Integer(), nullable=True),
    )
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])

    op.create_table(
        "audit_records",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), sa.ForeignKey("api_keys.id"), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("task", sa.String(64), nullable=True),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("outputs", sa.JSON(), nullable=True),
        sa.Column("scores", sa.JSON(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("provenance", sa.JSON(), nullable=True),
        sa.Column("content_sha256", sa.String(64), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False, unique=True),
    )
    op.create_index("ix_audit_records_created_at", "audit_records", ["created_at"])
    op.create_index("ix_audit_records_content_sha256", "audit_records", ["content_sha256"])

    op.create_table(
        "audit_output_hashes",
        sa.Column("audit_record_id", sa.Integer(), sa.ForeignKey("audit_records.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("output_index", sa.Integer(), primary_key=True),
        sa.Column("content_sha256", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_output_hashes_content_sha256", "audit_output_hashes", ["content_sha256"])

    op.create_table(
        "content_items",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=True),
        sa.Column("scores", sa.JSON(), nullable=True),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("audit_record_id", sa.Integer(), sa.ForeignKey("audit_records.id"), nullable=True),
    )
    op.create_index("ix_content_items_updated_at", "content_items", ["updated_at"])
    op.create_index("ix_content_items_task", "content_items", ["task"])

    op.create_table(
        "content_tags",
        sa.Column("item_id", sa.String(36), sa.ForeignKey("content_items.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
    )
    op.create_index("ix_content_tags_tag", "content_tags", ["tag"])


def downgrade() -> None:
    op.drop_table("content_tags")
    op.drop_table("content_items")
    op.drop_table("audit_output_hashes")
    op.drop_table("audit_records")
    op.drop_table("api_keys")
