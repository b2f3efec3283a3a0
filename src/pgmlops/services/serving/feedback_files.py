"""Bulk feedback from a CSV file (`pgmlops feedback --file labels.csv [--key COLUMN]`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pgmlops.errors import ConfigError, DataError
from pgmlops.services.context import Context
from pgmlops.services.serving.feedback import LabelFor, record_feedback, record_labels


def _read(path: Path, text_columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"feedback file {path} does not exist")
    try:
        # Ids and keys stay text: a key 007 or 25000000 must not become 7 or 25000000.0.
        return pd.read_csv(path, dtype=dict.fromkeys(text_columns, str))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"feedback file {path} cannot be parsed: {exc}") from exc


def load_feedback_file(
    ctx: Context, path: Path, *, key: str | None = None, model_name: str | None = None
) -> dict[str, Any]:
    """Read prediction_id,label rows (or KEY,label rows) and store them in one transaction.

    With a key column, each label goes to the latest prediction of the model logged with that
    key; keys no prediction carries are counted and listed in the answer. Any bad row stops
    the load.
    """
    frame = _read(path, [key or "prediction_id", "label"])
    if key is not None and key not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:12]))
        raise ConfigError(
            f"key {key}: feedback file {path} has no such column (columns: {shown})",
            params=("key",),
        )
    needed = {key or "prediction_id", "label"}
    missing = needed - set(frame.columns)
    if missing:
        raise DataError(f"feedback file {path} lacks column(s): {', '.join(sorted(missing))}")
    if frame.empty:
        raise DataError(f"feedback file {path} has no rows")
    if key is None:
        pairs = list(zip(frame["prediction_id"], frame["label"], strict=True))
        # One validation pass and one transaction: a bad row stores nothing, not half a file.
        return record_feedback(ctx, pairs)
    items = [
        # Line numbers as an editor shows them: the header is line 1.
        LabelFor(label, f"{path.name} line {i + 2}", key="" if pd.isna(value) else value)
        for i, (value, label) in enumerate(zip(frame[key], frame["label"], strict=True))
    ]
    return record_labels(ctx, items, model_name=model_name or ctx.settings.model_name)
