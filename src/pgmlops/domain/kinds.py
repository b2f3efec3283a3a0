"""The task and feature kinds every layer names (no heavy imports: settings read them)."""

from __future__ import annotations

from typing import Literal

Task = Literal["binary", "multiclass", "regression"]
Kind = Literal["numeric", "categorical"]
