"""True labels for logged predictions, validated against each prediction's model version."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pgmlops.domain.registry.card import ModelCard
from pgmlops.domain.schema import key_text
from pgmlops.errors import NotFoundError, ValidationError
from pgmlops.services.context import Context
from pgmlops.store.prediction_log.predictions import PredictionStore


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


@dataclass(frozen=True)
class LabelFor:
    """A true label and what it is for: a prediction id, or a key the prediction was logged with.

    `where` names the item in error messages ("item 3", "labels.csv line 5").
    """

    label: Any
    where: str
    prediction_id: Any = None
    key: Any = None


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
    return record_labels(
        ctx,
        [LabelFor(label, f"item {i}", prediction_id=pid) for i, (pid, label) in enumerate(items)],
        flush=flush,
        model_name=model_name,
        only_model=model_name is not None,
    )


def labels_from_json(items: Sequence[Any]) -> list[LabelFor]:
    """Items of a /feedback body: {prediction_id, label} or {key, label} objects."""
    labels = []
    for i, item in enumerate(items):
        where = f"item {i}"
        if not isinstance(item, dict) or "label" not in item:
            raise ValidationError(
                f"{where}: expected an object with prediction_id (or key) and label"
            )
        if len({"prediction_id", "key"} & set(item)) != 1:
            raise ValidationError(f"{where}: give either prediction_id or key")
        extra = set(item) - {"prediction_id", "key", "label"}
        if extra:
            raise ValidationError(f"{where}: unexpected field(s) {sorted(extra)}")
        if "key" in item:
            # A null key must not read as "no key" and fall back to prediction_id.
            key = "" if item["key"] is None else item["key"]
            labels.append(LabelFor(item["label"], where, key=key))
        else:
            labels.append(LabelFor(item["label"], where, prediction_id=item["prediction_id"]))
    return labels


def _parse(items: Sequence[LabelFor]) -> tuple[list[str | None], list[str | None]]:
    """Each item's prediction id (canonical UUID text) or key (as the log stores keys)."""
    ids: list[str | None] = []
    keys: list[str | None] = []
    for item in items:
        pid = key = None
        if item.key is not None:
            if not isinstance(item.key, str | int) or isinstance(item.key, bool):
                raise ValidationError(f"{item.where}: key must be text or an integer")
            key = key_text(item.key)
            if key is None:
                raise ValidationError(f"{item.where}: key is blank")
        else:
            try:
                pid = str(uuid.UUID(str(item.prediction_id)))
            except ValueError:
                raise ValidationError(
                    f"{item.where}: prediction_id {item.prediction_id!r} is not a UUID"
                ) from None
        ids.append(pid)
        keys.append(key)
    return ids, keys


def record_labels(
    ctx: Context,
    items: Sequence[LabelFor],
    *,
    model_name: str | None = None,
    flush: Callable[[], object] | None = None,
    only_model: bool = False,
) -> dict[str, Any]:
    """Store labels for prediction ids and for keys, all or nothing.

    With `only_model`, every prediction id must also be a prediction of `model_name`
    (/models/{name}/feedback); otherwise `model_name` only says whose keys to look up.

    A key's label goes to the latest prediction `model_name` logged with that key (latest by
    time: the score the outcome followed); earlier predictions for the key stay unlabelled.
    A key no prediction carries stores nothing and is counted and named in the answer. An
    unknown prediction id, or only keys and none of them matching, is NotFoundError and stores
    nothing at all.
    """
    if not items:
        raise ValidationError("no feedback given: send {prediction_id, label} or a list of them")
    ids, keys = _parse(items)
    wanted_ids = [pid for pid in ids if pid is not None]
    wanted_keys = list(dict.fromkeys(k for k in keys if k is not None))
    if wanted_keys and not model_name:
        raise ValidationError("feedback by key needs the model the predictions were made by")
    store = PredictionStore(ctx.db)

    def look_up() -> tuple[dict[str, tuple[str, int]], dict[str, tuple[str, int]]]:
        known = store.prediction_versions(wanted_ids) if wanted_ids else {}
        found = store.latest_by_key(model_name or "", wanted_keys) if wanted_keys else {}
        return known, found

    known, found = look_up()
    if (len(known) < len(set(wanted_ids)) or len(found) < len(wanted_keys)) and flush is not None:
        # The log is written in the background: a very fresh prediction may still be queued.
        flush()
        known, found = look_up()
    missing = [pid for pid in wanted_ids if pid not in known]
    if missing:
        raise NotFoundError(
            f"unknown prediction_id {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    unmatched = [k for k in wanted_keys if k not in found]
    if wanted_keys and not found and not wanted_ids:
        raise NotFoundError(
            f"none of the {len(wanted_keys)} key(s) matches a prediction of model "
            f"{model_name!r} logged with a key (first: {unmatched[0]!r}); predictions carry "
            "the key column serving.key_column names, or the first identifier training left out"
        )
    for pid, version in found.values():
        known[pid] = (model_name or "", version)
    cards: dict[tuple[str, int], ModelCard] = {}
    labels: list[tuple[str, str]] = []
    for item, by_id, key in zip(items, ids, keys, strict=True):
        pid = found[key][0] if key in found else by_id
        if pid is None:
            continue  # a key no prediction carries: counted in the answer
        made_by = known[pid]
        if only_model and made_by[0] != model_name:
            raise ValidationError(
                f"{item.where}: prediction {pid} was made by model {made_by[0]!r}, "
                f"not {model_name!r}"
            )
        if made_by not in cards:
            cards[made_by] = ctx.registry.get_version(*made_by).card
        labels.append((pid, _label_text(item.label, cards[made_by], item.where)))
    stored, replaced = store.add_feedback(labels) if labels else ([], set())
    result: dict[str, Any] = {"stored": len(stored), "replaced": len(replaced)}
    if wanted_keys:
        result["keys_not_found"] = len(unmatched)
        result["unmatched_keys"] = unmatched
    return result
