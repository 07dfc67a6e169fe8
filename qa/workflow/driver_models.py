"""Tables of call drivers: the groups a build found or a lead kept, and each call's driver.

Kept apart from `qa.workflow.models` (same `Base`, so `create_all` makes them) because
drivers are analytics over calls rather than part of reviewing one. `call_drivers` has no
foreign key to `calls`: a build reads the store, and a call may reach it before the
workflow database has synced it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from qa.workflow.models import Base, utcnow


class Driver(Base):
    """One reason customers call; `pinned` drivers label new calls and survive a rebuild."""

    __tablename__ = "drivers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    examples: Mapped[list[str]] = mapped_column(JSON, default=list)  # call ids
    # unit vector in the space centred on `center` (the build's mean embedding)
    centroid: Mapped[list[float]] = mapped_column(JSON, default=list)
    center: Mapped[list[float]] = mapped_column(JSON, default=list)
    encoder: Mapped[str] = mapped_column(String(200), default="")
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("drivers.id"), nullable=True)
    build: Mapped[int] = mapped_column(Integer, default=0)  # which `qa drivers build` made it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CallDriver(Base):
    """A call's driver (None: "other") with what driver trends need about the call."""

    __tablename__ = "call_drivers"

    call_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    driver_id: Mapped[int | None] = mapped_column(
        ForeignKey("drivers.id", ondelete="SET NULL"), index=True, nullable=True
    )
    similarity: Mapped[float | None] = mapped_column(Float)
    how: Mapped[str] = mapped_column(String(16), default="build")  # build | assign | merge
    opening: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str | None] = mapped_column(String(16))
    customer_id: Mapped[str | None] = mapped_column(String(128), index=True)
    started_at: Mapped[datetime | None] = mapped_column(index=True)
    auto_passed: Mapped[bool | None] = mapped_column(Boolean)
    customer_sentiment: Mapped[float | None] = mapped_column(Float)
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)
