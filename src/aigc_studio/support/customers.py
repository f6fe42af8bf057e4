"""Customer profiles and their ticket history, as the assistant reads them from the database.

::

    load_customers(db, "src/aigc_studio/support/demo/customers.json")   # upsert profiles and past tickets
    profile = get_profile(db, "C1001")          # CustomerProfile(name="Alice Chen", plan="Premium", ...)
    profile.recent_complaint(days=30)           # the newest complaint ticket of the last 30 days, or None

A customers file is JSON: ``{"customers": [{"id", "name", "plan", "tone"?, "language"?, "orders": [...],
"tickets": [...]}]}``. Orders and tickets give their age as ``days_ago`` (so a demo's history stays recent)
or as an ISO-8601 ``date``. Loading again updates profiles and tickets by id; nothing is removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator
from sqlalchemy import select

from aigc_studio.errors import AigcError
from aigc_studio.fileio import require_file
from aigc_studio.store.db import Database
from aigc_studio.store.models import utc_now
from aigc_studio.support.models import SupportCustomer, SupportTicket

TICKET_STATUSES = ("open", "answered", "closed")


class _Dated(BaseModel):
    model_config = {"extra": "forbid"}

    days_ago: float | None = Field(None, ge=0)
    date: datetime | None = None

    def when(self, now: datetime) -> datetime:
        if self.date is not None:
            return self.date if self.date.tzinfo else self.date.replace(tzinfo=timezone.utc)
        return now - timedelta(days=self.days_ago or 0)


class OrderIn(_Dated):
    id: str = Field(min_length=1, max_length=64)
    item: str = Field(min_length=1)
    status: str = Field(min_length=1)


class TicketIn(_Dated):
    id: str = Field(min_length=1, max_length=32)
    category: str = Field("question", min_length=1, max_length=32)
    status: Literal["open", "answered", "closed"] = "closed"
    subject: str = Field(min_length=1)
    summary: str = ""


class CustomerIn(BaseModel):
    model_config = {"extra": "forbid"}

    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    plan: str = Field(min_length=1, max_length=100)
    tone: Literal["friendly", "formal"] | None = None
    language: str = "en"
    orders: list[OrderIn] = Field(default_factory=list)
    tickets: list[TicketIn] = Field(default_factory=list)


class CustomersFile(BaseModel):
    model_config = {"extra": "forbid"}

    customers: list[CustomerIn]

    @model_validator(mode="after")
    def _unique(self) -> CustomersFile:
        ids = [customer.id for customer in self.customers]
        duplicate = next((i for i in ids if ids.count(i) > 1), None)
        if duplicate is not None:
            raise ValueError(f"customer id {duplicate!r} appears twice")
        return self


@dataclass(frozen=True)
class PastTicket:
    """One ticket of a customer's history (also the ones the assistant opened)."""

    id: str
    status: str
    category: str
    subject: str
    summary: str
    created_at: datetime


@dataclass(frozen=True)
class CustomerProfile:
    """What the assistant knows about a customer: profile, orders (newest first) and tickets (newest first)."""

    id: str
    name: str
    plan: str
    tone: str | None
    language: str
    orders: tuple[dict[str, Any], ...]
    tickets: tuple[PastTicket, ...]

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.split() else self.name

    def recent_complaint(self, days: int, now: datetime | None = None) -> PastTicket | None:
        """The newest ticket filed as a complaint in the last ``days`` days, or None."""
        since = (now or utc_now()) - timedelta(days=days)
        return next((t for t in self.tickets if t.category == "complaint" and t.created_at >= since), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "plan": self.plan, "tone": self.tone, "language": self.language,
            "orders": list(self.orders),
            "tickets": [{"id": t.id, "status": t.status, "category": t.category, "subject": t.subject,
                         "created_at": t.created_at.isoformat()} for t in self.tickets],
        }


class CustomerNotFoundError(AigcError):
    """No customer has this id (the server answers 404)."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(
            f"no customer with id {customer_id!r}; load customers with `aigc support customers load FILE` "
            "or use an id from `aigc support customers list`",
            param="customer_id", code="customer_not_found", status=404,
        )


@dataclass
class CustomersReport:
    """What loading a customers file changed."""

    customers_added: int = 0
    customers_updated: int = 0
    tickets: int = 0


def read_customers_file(path: str | Path) -> CustomersFile:
    """Parse and check a customers file.

    Raises:
        AigcError: the file is missing, empty, not JSON, or a field is missing or invalid (the message
            names the field).
    """
    path = require_file(path, "customers file")
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise AigcError(f"{path} is empty; give a JSON object {{\"customers\": [...]}}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise AigcError(f"{path} is not valid JSON (line {error.lineno}: {error.msg}); fix the file") from None
    try:
        return CustomersFile.model_validate(data)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "file"
        raise AigcError(f"{path}: {where}: {problem['msg']}; see docs/support.md for the customers file format",
                        param=where) from None


def load_customers(db: Database, path: str | Path) -> CustomersReport:
    """Insert or update the customers of a file and their past tickets (by id); returns the counts."""
    data = read_customers_file(path)
    now = utc_now()
    report = CustomersReport()
    with db.session(lock=True) as session:
        for customer in data.customers:
            row = session.get(SupportCustomer, customer.id)
            orders = [
                {"id": o.id, "item": o.item, "status": o.status, "date": o.when(now).date().isoformat()}
                for o in sorted(customer.orders, key=lambda o: o.when(now), reverse=True)
            ]
            if row is None:
                row = SupportCustomer(id=customer.id, created_at=now)
                session.add(row)
                report.customers_added += 1
            else:
                report.customers_updated += 1
            row.name, row.plan, row.tone, row.language = customer.name, customer.plan, customer.tone, customer.language
            row.orders, row.updated_at = orders, now
            session.flush()
            for ticket in customer.tickets:
                stored = session.get(SupportTicket, ticket.id)
                if stored is not None and stored.customer_id != customer.id:
                    raise AigcError(f"{path}: ticket {ticket.id} already belongs to customer {stored.customer_id}; "
                                    "give it another id")
                when = ticket.when(now)
                if stored is None:
                    stored = SupportTicket(id=ticket.id, customer_id=customer.id, session_id=None, transcript=[],
                                           created_at=when)
                    session.add(stored)
                stored.status, stored.category, stored.subject = ticket.status, ticket.category, ticket.subject
                stored.summary, stored.created_at, stored.updated_at = ticket.summary, when, now
                report.tickets += 1
    return report


def get_profile(db: Database, customer_id: str) -> CustomerProfile:
    """The customer's profile with orders and tickets, newest first.

    Raises:
        CustomerNotFoundError: no customer has this id (status 404).
    """
    with db.session() as session:
        row = session.get(SupportCustomer, customer_id)
        if row is None:
            raise CustomerNotFoundError(customer_id)
        tickets = session.scalars(
            select(SupportTicket).where(SupportTicket.customer_id == customer_id).order_by(SupportTicket.created_at.desc())
        )
        return CustomerProfile(
            id=row.id, name=row.name, plan=row.plan, tone=row.tone, language=row.language,
            orders=tuple(row.orders or ()),
            tickets=tuple(PastTicket(t.id, t.status, t.category, t.subject, t.summary, t.created_at) for t in tickets),
        )


def list_customers(db: Database) -> list[CustomerProfile]:
    """Every customer's profile, by id."""
    with db.session() as session:
        ids = list(session.scalars(select(SupportCustomer.id).order_by(SupportCustomer.id)))
    return [get_profile(db, customer_id) for customer_id in ids]
