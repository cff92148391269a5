"""provider appointments

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 14:12:56.186195
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "booking_series",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("interval_weeks", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_booking_series_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_series")),
    )
    with op.batch_alter_table("booking_series", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_booking_series_org_id"), ["org_id"], unique=False)

    op.create_table(
        "clients",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_clients_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
        sa.UniqueConstraint("org_id", "email", name=op.f("uq_clients_org_id")),
    )
    op.create_table(
        "services",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("duration_min", sa.Integer(), nullable=False),
        sa.Column("price_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("buffer_before_min", sa.Integer(), nullable=False),
        sa.Column("buffer_after_min", sa.Integer(), nullable=False),
        sa.Column("min_notice_min", sa.Integer(), nullable=False),
        sa.Column("max_days_ahead", sa.Integer(), nullable=False),
        sa.Column("slot_step_min", sa.Integer(), nullable=True),
        sa.Column("schedule_name", sa.String(length=100), nullable=True),
        sa.Column("room_type", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('individual', 'workshop', 'course', 'package', 'bundle')",
            name=op.f("ck_services_kind"),
        ),
        sa.CheckConstraint(
            "buffer_before_min >= 0 AND buffer_after_min >= 0 AND min_notice_min >= 0",
            name=op.f("ck_services_non_negative"),
        ),
        sa.CheckConstraint("capacity >= 1", name=op.f("ck_services_capacity")),
        sa.CheckConstraint(
            "duration_min >= 5 AND duration_min <= 1440", name=op.f("ck_services_duration")
        ),
        sa.CheckConstraint("max_days_ahead >= 1", name=op.f("ck_services_horizon")),
        sa.CheckConstraint("price_minor >= 0", name=op.f("ck_services_price")),
        sa.CheckConstraint(
            "slot_step_min IS NULL OR slot_step_min >= 5", name=op.f("ck_services_step")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_services_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
    )
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_services_org_id"), ["org_id"], unique=False)

    op.create_table(
        "leads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('new', 'contacted', 'converted')", name=op.f("ck_leads_status")
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_leads_client_id_clients"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_leads_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
    )
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.create_index("ix_leads_org_email", ["org_id", "email"], unique=False)

    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_schedules_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_schedules_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("provider_id", "name", name=op.f("uq_schedules_provider_id")),
    )
    op.create_table(
        "service_providers",
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_service_providers_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_service_providers_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name=op.f("fk_service_providers_service_id_services"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("service_id", "provider_id", name=op.f("pk_service_providers")),
    )
    with op.batch_alter_table("service_providers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_providers_provider_id"), ["provider_id"], unique=False
        )

    op.create_table(
        "time_off",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("end_at > start_at", name=op.f("ck_time_off_time_order")),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_time_off_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_time_off_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_time_off")),
    )
    with op.batch_alter_table("time_off", schema=None) as batch_op:
        batch_op.create_index(
            "ix_time_off_provider_start", ["provider_id", "start_at"], unique=False
        )

    op.create_table(
        "availability_blocks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("start_min", sa.Integer(), nullable=False),
        sa.Column("end_min", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "start_min >= 0 AND end_min <= 1440 AND start_min < end_min",
            name=op.f("ck_availability_blocks_hours"),
        ),
        sa.CheckConstraint("weekday BETWEEN 0 AND 6", name=op.f("ck_availability_blocks_weekday")),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_availability_blocks_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_availability_blocks_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_availability_blocks")),
    )
    with op.batch_alter_table("availability_blocks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_availability_blocks_schedule_id"), ["schedule_id"], unique=False
        )

    op.create_table(
        "dated_availability",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("start_min", sa.Integer(), nullable=False),
        sa.Column("end_min", sa.Integer(), nullable=False),
        sa.Column("replace", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "start_min >= 0 AND end_min <= 1440 AND start_min <= end_min",
            name=op.f("ck_dated_availability_hours"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_dated_availability_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_dated_availability_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_dated_availability_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dated_availability")),
    )
    with op.batch_alter_table("dated_availability", schema=None) as batch_op:
        batch_op.create_index(
            "ix_dated_availability_provider_day", ["provider_id", "day"], unique=False
        )

    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("series_id", sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f("ix_bookings_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_bookings_series_id"), ["series_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_bookings_series_id_booking_series"),
            "booking_series",
            ["series_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_bookings_client_id_clients"),
            "clients",
            ["client_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("service_id", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column("buffer_before_min", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("buffer_after_min", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_index(
            "ix_sessions_provider_start", ["provider_id", "start_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sessions_service_id"), ["service_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_sessions_provider_id_providers"),
            "providers",
            ["provider_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_sessions_service_id_services"),
            "services",
            ["service_id"],
            ["id"],
            ondelete="RESTRICT",
        )

    if op.get_bind().dialect.name == "postgresql":
        # A provider is never in two live sessions at once (the database's own backstop).
        op.execute(
            "ALTER TABLE sessions ADD CONSTRAINT ex_sessions_provider_overlap "
            "EXCLUDE USING gist (provider_id WITH =, tstzrange(start_at, end_at) WITH &&) "
            "WHERE (provider_id IS NOT NULL AND status <> 'canceled')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE sessions DROP CONSTRAINT ex_sessions_provider_overlap")

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_sessions_service_id_services"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_sessions_provider_id_providers"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_sessions_service_id"))
        batch_op.drop_index("ix_sessions_provider_start")
        batch_op.drop_column("buffer_after_min")
        batch_op.drop_column("buffer_before_min")
        batch_op.drop_column("service_id")
        batch_op.drop_column("provider_id")

    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_bookings_client_id_clients"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_bookings_series_id_booking_series"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_bookings_series_id"))
        batch_op.drop_index(batch_op.f("ix_bookings_client_id"))
        batch_op.drop_column("series_id")
        batch_op.drop_column("client_id")

    with op.batch_alter_table("dated_availability", schema=None) as batch_op:
        batch_op.drop_index("ix_dated_availability_provider_day")

    op.drop_table("dated_availability")
    with op.batch_alter_table("availability_blocks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_availability_blocks_schedule_id"))

    op.drop_table("availability_blocks")
    with op.batch_alter_table("time_off", schema=None) as batch_op:
        batch_op.drop_index("ix_time_off_provider_start")

    op.drop_table("time_off")
    with op.batch_alter_table("service_providers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_providers_provider_id"))

    op.drop_table("service_providers")
    op.drop_table("schedules")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("ix_leads_org_email")

    op.drop_table("leads")
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_services_org_id"))

    op.drop_table("services")
    op.drop_table("clients")
    with op.batch_alter_table("booking_series", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_booking_series_org_id"))

    op.drop_table("booking_series")
