"""side effects and providers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 13:44:04.361395
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

    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("topic", sa.String(length=16), nullable=False),
        sa.Column("stream", sa.String(length=120), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "topic IN ('event', 'email', 'calendar', 'webhook')", name=op.f("ck_outbox_topic")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_outbox_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_outbox_dedupe_key")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_due",
            ["next_attempt_at"],
            unique=False,
            postgresql_where=sa.text("delivered_at IS NULL AND dead_at IS NULL"),
            sqlite_where=sa.text("delivered_at IS NULL AND dead_at IS NULL"),
        )
        batch_op.create_index("ix_outbox_org_created", ["org_id", "created_at"], unique=False)
        batch_op.create_index(
            "ix_outbox_stream_pending",
            ["stream", "id"],
            unique=False,
            postgresql_where=sa.text("delivered_at IS NULL AND dead_at IS NULL"),
            sqlite_where=sa.text("delivered_at IS NULL AND dead_at IS NULL"),
        )

    op.create_table(
        "providers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("feed_token", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_providers_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_providers_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_providers")),
    )
    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_providers_org_id"), ["org_id"], unique=False)

    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_webhook_subscriptions_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
    )
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_subscriptions_org_id"), ["org_id"], unique=False
        )

    op.create_table(
        "calendar_connections",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=True),
        sa.Column("room_id", sa.Uuid(), nullable=True),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("username", sa.String(length=320), nullable=True),
        sa.Column("password_encrypted", sa.Text(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(provider_id IS NULL) <> (room_id IS NULL)",
            name=op.f("ck_calendar_connections_one_owner"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_calendar_connections_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_calendar_connections_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["rooms.id"],
            name=op.f("fk_calendar_connections_room_id_rooms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_connections")),
    )
    with op.batch_alter_table("calendar_connections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_calendar_connections_org_id"), ["org_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_calendar_connections_provider_id"), ["provider_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_calendar_connections_room_id"), ["room_id"], unique=False
        )

    op.create_table(
        "external_busy_times",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("connection_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=True),
        sa.Column("room_id", sa.Uuid(), nullable=True),
        sa.Column("uid", sa.String(length=500), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("end_at > start_at", name=op.f("ck_external_busy_times_time_order")),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["calendar_connections.id"],
            name=op.f("fk_external_busy_times_connection_id_calendar_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_external_busy_times_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_external_busy_times_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["rooms.id"],
            name=op.f("fk_external_busy_times_room_id_rooms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_busy_times")),
        sa.UniqueConstraint(
            "connection_id", "uid", "start_at", name=op.f("uq_external_busy_times_connection_id")
        ),
    )
    with op.batch_alter_table("external_busy_times", schema=None) as batch_op:
        batch_op.create_index(
            "ix_external_busy_provider_start", ["provider_id", "start_at"], unique=False
        )
        batch_op.create_index("ix_external_busy_room_start", ["room_id", "start_at"], unique=False)

    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("customer_email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("customer_phone", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("customer_timezone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("sequence", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("feed_token", sa.String(length=64), nullable=True))


def downgrade() -> None:

    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.drop_column("feed_token")

    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_column("reminded_at")
        batch_op.drop_column("sequence")
        batch_op.drop_column("customer_timezone")
        batch_op.drop_column("customer_phone")
        batch_op.drop_column("customer_email")
        batch_op.drop_column("customer_name")

    with op.batch_alter_table("external_busy_times", schema=None) as batch_op:
        batch_op.drop_index("ix_external_busy_room_start")
        batch_op.drop_index("ix_external_busy_provider_start")

    op.drop_table("external_busy_times")
    with op.batch_alter_table("calendar_connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calendar_connections_room_id"))
        batch_op.drop_index(batch_op.f("ix_calendar_connections_provider_id"))
        batch_op.drop_index(batch_op.f("ix_calendar_connections_org_id"))

    op.drop_table("calendar_connections")
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_subscriptions_org_id"))

    op.drop_table("webhook_subscriptions")
    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_providers_org_id"))

    op.drop_table("providers")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_outbox_stream_pending",
            postgresql_where=sa.text("delivered_at IS NULL AND dead_at IS NULL"),
            sqlite_where=sa.text("delivered_at IS NULL AND dead_at IS NULL"),
        )
        batch_op.drop_index("ix_outbox_org_created")
        batch_op.drop_index(
            "ix_outbox_due",
            postgresql_where=sa.text("delivered_at IS NULL AND dead_at IS NULL"),
            sqlite_where=sa.text("delivered_at IS NULL AND dead_at IS NULL"),
        )

    op.drop_table("outbox")
