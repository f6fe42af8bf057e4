"""Knowledge base of the customer-service assistant: sources, entries and every entry's versions.

Revision ID: 0002_support_kb
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aigc_studio.store.models import UTCDateTime

revision = "0002_support_kb"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kb_sources",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(400), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("ingested_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "kb_entries",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("source_id", sa.Integer(), sa.ForeignKey("kb_sources.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("intent", sa.String(100), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_kb_entries_source_id", "kb_entries", ["source_id"])
    op.create_index("ix_kb_entries_intent", "kb_entries", ["intent"])
    op.create_table(
        "kb_entry_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("entry_id", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("source_name", sa.String(400), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("intent", sa.String(100), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("entry_id", "version", name="uq_kb_entry_versions_entry_version"),
    )
    op.create_index("ix_kb_entry_versions_entry_id", "kb_entry_versions", ["entry_id"])


def downgrade() -> None:
    op.drop_table("kb_entry_versions")
    op.drop_table("kb_entries")
    op.drop_table("kb_sources")
