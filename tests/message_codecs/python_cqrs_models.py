"""The same order event twice: as python-cqrs 5.3 declares it and as anycqrs does."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from uuid import UUID

import attrs
import cqrs


@dataclasses.dataclass(frozen=True)
class CqrsLine:
    sku_code: str
    unit_count: int


@dataclasses.dataclass(frozen=True)
class CqrsOrderPaid:
    order_id: int
    total_amount: float
    paid_by: UUID
    extra_info: dict[str, int]
    lines: list[CqrsLine]


class CqrsOrderPaidEvent(cqrs.NotificationEvent[CqrsOrderPaid]):
    """python-cqrs's dataclass notification (what its JSON serializer writes)."""

    event_name: str = "OrderPaid"


@attrs.frozen
class Line:
    sku_code: str
    unit_count: int


@attrs.frozen
class OrderPaid:
    order_id: int
    total_amount: float
    paid_by: UUID
    extra_info: dict[str, int] = attrs.field(factory=dict)
    lines: list[Line] = attrs.field(factory=list)
    paid_at: datetime | None = None
