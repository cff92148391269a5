"""group sessions and attendance

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 17:50:58.526846
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

    op.create_table(
        "courses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("max_participants", sa.Integer(), nullable=False),
        sa.Column("price_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("visibility", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'scheduled', 'canceled')", name=op.f("ck_courses_status")
        ),
        sa.CheckConstraint("max_participants >= 1", name=op.f("ck_courses_max_participants")),
        sa.CheckConstraint("price_minor >= 0", name=op.f("ck_courses_price")),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_courses_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name=op.f("fk_courses_service_id_services"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_courses")),
    )
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_courses_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_courses_service_id"), ["service_id"], unique=False)

    op.create_table(
        "package_items",
        sa.Column("package_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "quantity >= 1 AND quantity <= 100", name=op.f("ck_package_items_quantity")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_package_items_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["package_id"],
            ["services.id"],
            name=op.f("fk_package_items_package_id_services"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.id"],
            name=op.f("fk_package_items_service_id_services"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("package_id", "service_id", name=op.f("pk_package_items")),
    )
    with op.batch_alter_table("package_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_package_items_service_id"), ["service_id"], unique=False
        )

    op.create_table(
        "attendance",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("booking_id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Integer(), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "source IN ('api', 'livekit', 'check_in')", name=op.f("ck_attendance_source")
        ),
        sa.CheckConstraint(
            "left_at IS NULL OR left_at >= joined_at", name=op.f("ck_attendance_time_order")
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["bookings.id"],
            name=op.f("fk_attendance_booking_id_bookings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_attendance_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_attendance_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attendance")),
        sa.UniqueConstraint("external_id", name=op.f("uq_attendance_external_id")),
    )
    with op.batch_alter_table("attendance", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attendance_booking_id"), ["booking_id"], unique=False)
        batch_op.create_index(
            "ix_attendance_session_booking", ["session_id", "booking_id"], unique=False
        )

    op.create_table(
        "waitlist_entries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("booking_id", sa.Uuid(), nullable=True),
        sa.Column("offered_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('waiting', 'offered', 'accepted', 'expired', 'cancelled')",
            name=op.f("ck_waitlist_entries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["bookings.id"],
            name=op.f("fk_waitlist_entries_booking_id_bookings"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_waitlist_entries_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_waitlist_entries_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_waitlist_entries_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_entries")),
    )
    with op.batch_alter_table("waitlist_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_waitlist_entries_session_created", ["session_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "uq_waitlist_entries_live",
            ["session_id", "user_id"],
            unique=True,
            postgresql_where=sa.text("status IN ('waiting', 'offered')"),
            sqlite_where=sa.text("status IN ('waiting', 'offered')"),
        )

    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("service_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_bookings_service_id_services"),
            "services",
            ["service_id"],
            ["id"],
            ondelete="RESTRICT",
        )

    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.add_column(sa.Column("validity_days", sa.Integer(), nullable=True))

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("course_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("sequence_no", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("actual_start_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("actual_end_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "waitlist_enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "track_attendance", sa.Boolean(), server_default=sa.text("false"), nullable=False
            )
        )
        batch_op.create_index(batch_op.f("ix_sessions_course_id"), ["course_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_sessions_course_id_courses"),
            "courses",
            ["course_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_sessions_course_id_courses"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_sessions_course_id"))
        batch_op.drop_column("track_attendance")
        batch_op.drop_column("waitlist_enabled")
        batch_op.drop_column("actual_end_at")
        batch_op.drop_column("actual_start_at")
        batch_op.drop_column("sequence_no")
        batch_op.drop_column("course_id")
        batch_op.drop_column("description")

    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_column("validity_days")

    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_bookings_service_id_services"), type_="foreignkey")
        batch_op.drop_column("valid_until")
        batch_op.drop_column("service_id")

    with op.batch_alter_table("waitlist_entries", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_waitlist_entries_live",
            postgresql_where=sa.text("status IN ('waiting', 'offered')"),
            sqlite_where=sa.text("status IN ('waiting', 'offered')"),
        )
        batch_op.drop_index("ix_waitlist_entries_session_created")

    op.drop_table("waitlist_entries")
    with op.batch_alter_table("attendance", schema=None) as batch_op:
        batch_op.drop_index("ix_attendance_session_booking")
        batch_op.drop_index(batch_op.f("ix_attendance_booking_id"))

    op.drop_table("attendance")
    with op.batch_alter_table("package_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_package_items_service_id"))

    op.drop_table("package_items")
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_courses_service_id"))
        batch_op.drop_index(batch_op.f("ix_courses_org_id"))

    op.drop_table("courses")
