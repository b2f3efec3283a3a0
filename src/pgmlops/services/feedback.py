"""True labels for logged predictions, validated against each prediction's model version."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pgmlops.domain.card import ModelCard
from pgmlops.errors import NotFoundError, ValidationError
from pgmlops.services.context import Context
from pgmlops.store.predictions import PredictionStore


def _label_text(label: Any, card: ModelCard, where: str) -> str:
    if card.task == "regression":
        if isinstance(label, bool) or not isinstance(label, int | float | str):
            raise ValidationError(f"{where}: label must be a number for a regression model")
        try:
            value = float(label)
        except ValueError:
            raise ValidationError(f"{where}: label {label!r} is not a number") from None
        if not np.isfinite(value):
            raise ValidationError(f"{where}: label must be a finite number")
        return repr(value)
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    text = (
        str(label).strip() if isinstance(label, str | int) and not isinstance(label, bool) else None
    )
    classes = card.classes or []
    if text is None or text not in classes:
        raise ValidationError(f"{where}: label {label!r} is not one of the classes {classes}")
    return text


def record_feedback(
    ctx: Context,
    items: Sequence[tuple[str, Any]],
    *,
    flush: Callable[[], object] | None = None,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Store (prediction_id, label) pairs; every id must exist and every label fit its model.

    With `model_name`, every id must also be a prediction of that model.
    """
    if not items:
        raise ValidationError("no feedback given: send {prediction_id, label} or a list of them")
    ids: list[str] = []
    for i, (pid, _) in enumerate(items):
        try:
            ids.append(str(uuid.UUID(str(pid))))
        except ValueError:
            raise ValidationError(f"item {i}: prediction_id {pid!r} is not a UUID") from None
    store = PredictionStore(ctx.db)
    known = store.prediction_versions(ids)
    if len(known) < len(set(ids)) and flush is not None:
        # The log is written in the background: a very fresh prediction may still be queued.
        flush()
        known = store.prediction_versions(ids)
    missing = [pid for pid in ids if pid not in known]
    if missing:
        raise NotFoundError(
            f"unknown prediction_id {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    cards: dict[tuple[str, int], ModelCard] = {}
    labels: list[tuple[str, str]] = []
    for i, (pid, label) in enumerate(zip(ids, (lab for _, lab in items), strict=True)):
        key = known[pid]
        if model_name is not None and key[0] != model_name:
            raise ValidationError(
                f"item {i}: prediction {pid} was made by model {key[0]!r}, not {model_name!r}"
            )
        if key not in cards:
            cards[key] = ctx.registry.get_version(*key).card
        labels.append((pid, _label_text(label, cards[key], f"item {i}")))
    stored, replaced = store.add_feedback(labels)
    return {"stored": len(stored), "replaced": len(replaced)}
