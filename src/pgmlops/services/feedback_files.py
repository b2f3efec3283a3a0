"""Bulk feedback from a CSV file (`pgmlops feedback --file labels.csv`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pgmlops.errors import DataError
from pgmlops.services.context import Context
from pgmlops.services.feedback import record_feedback


def load_feedback_file(ctx: Context, path: Path) -> dict[str, Any]:
    """Read prediction_id,label rows and store them in chunks; any bad row stops the load."""
    if not path.is_file():
        raise DataError(f"feedback file {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype={"prediction_id": str, "label": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"feedback file {path} cannot be parsed: {exc}") from exc
    missing = {"prediction_id", "label"} - set(frame.columns)
    if missing:
        raise DataError(f"feedback file {path} lacks column(s): {', '.join(sorted(missing))}")
    if frame.empty:
        raise DataError(f"feedback file {path} has no rows")
    pairs = list(zip(frame["prediction_id"], frame["label"], strict=True))
    # One validation pass and one transaction: a bad row stores nothing, not half a file.
    return record_feedback(ctx, pairs)
