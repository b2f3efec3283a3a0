"""The task and feature kinds every layer names, and how a date column was read (no heavy
imports: settings and model cards read them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Task = Literal["binary", "multiclass", "regression"]
Kind = Literal["numeric", "categorical"]


class DateSpec(BaseModel):
    """How training read a date column: its format and the reference day for `days_since`."""

    format: str
    reference: str
    reference_days: float
    ambiguous: bool = False
