"""The serving side of a model: load the production version, validate records, predict.

`ModelHolder.current` is one immutable `LoadedModel`; a reload builds the next one aside and
swaps the reference, so a request that read `current` once answers entirely from one version.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    create_model,
)

from pgmlops.config import ServingConfig, check_model_name
from pgmlops.domain.card import ModelCard
from pgmlops.domain.records import PRODUCTION, ModelVersion, PredictionRecord
from pgmlops.domain.schema import FLOAT32_MAX, FeatureSchema, key_text
from pgmlops.domain.served_fields import special_field
from pgmlops.errors import ArtifactError, ConfigError, NotFoundError, PgmlopsError
from pgmlops.services.context import Context
from pgmlops.services.inference import Engine, OnnxEngine, PipelineEngine, load_pipeline

log = logging.getLogger(__name__)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


# Fields a record may carry that the model does not read. Python names of our own, the
# column's name as the alias: a column called `_id` or `model_config` cannot clash with pydantic.
ENTITY_KEY_FIELD = "pgmlops_entity_key"
_IGNORED_FIELD = "pgmlops_ignored_{}"
# Keys are indexed: a bound (the log's column size) keeps each far below PostgreSQL's btree
# entry limit, and a NUL would make PostgreSQL refuse the row.
MAX_KEY_LENGTH = 200
EntityKey = (
    Annotated[int, Field(gt=-(10 ** (MAX_KEY_LENGTH - 1)), lt=10 ** (MAX_KEY_LENGTH - 1))]
    | Annotated[str, StringConstraints(max_length=MAX_KEY_LENGTH), AfterValidator(_no_nul)]
)


def _ignored_fields(
    schema: FeatureSchema, key: str | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Optional fields, documented as ignored, for left-out columns and the key; and their names."""
    fields: dict[str, Any] = {}
    if key is not None and key not in schema.names:
        why = schema.dropped.get(key)
        left_out = f" Training left it out ({why})." if why else ""
        fields[ENTITY_KEY_FIELD] = (
            EntityKey | None,
            Field(
                None,
                alias=key,
                title=key,
                description="Ignored by the model; kept in the prediction log as this "
                f"prediction's key, for feedback by key.{left_out}",
            ),
        )
    for k, (name, why) in enumerate(schema.dropped.items()):
        if name == key:
            continue
        fields[_IGNORED_FIELD.format(k)] = (
            Any,
            Field(
                None, alias=name, title=name, description=f"Ignored: training left it out ({why})."
            ),
        )
    return fields, tuple(fields)


def record_model(schema: FeatureSchema, serving: ServingConfig) -> type[BaseModel]:
    """A pydantic model whose fields ARE the feature schema (typed, enums for categories).

    Columns training left out are accepted and ignored; other unknown fields follow
    `serving.extra_fields`.
    """
    fields: dict[str, Any] = {}
    for spec in schema.features:
        special = special_field(spec, reject_unknown=serving.unknown_categories == "reject")
        if special is not None:
            fields[spec.name] = special
        elif spec.kind == "numeric":
            hint = f"training range {spec.min:g} .. {spec.max:g}" if spec.min is not None else None
            fields[spec.name] = (
                float | None,
                Field(
                    ...,
                    description=hint,
                    allow_inf_nan=False,
                    # Served models may compute in float32 (ONNX): a larger number would
                    # become infinity there, and be logged as a value no model can read.
                    ge=-FLOAT32_MAX,
                    le=FLOAT32_MAX,
                    examples=[spec.mean],
                ),
            )
        else:
            cats = [c for c in spec.categories or [] if c != "__missing__"]
            if serving.unknown_categories == "reject" and cats:
                kind: Any = Literal[tuple(cats)]  # type: ignore[valid-type]
            else:
                # Any string is accepted (and flagged), but not one PostgreSQL cannot store:
                # a NUL would fail the prediction log's whole batch, again on every replay.
                kind = Annotated[str, AfterValidator(_no_nul)]
            fields[spec.name] = (kind | None, Field(..., examples=cats[:1] or None))
    ignored, _ = _ignored_fields(schema, schema.key_column(serving.key_column))
    fields.update(ignored)
    extra = "forbid" if serving.extra_fields == "reject" else "ignore"
    return create_model(  # type: ignore[call-overload]
        "Record",
        __config__=ConfigDict(extra=extra, title="Record"),
        **fields,
    )


@dataclass(frozen=True)
class LoadedModel:
    """One version ready to serve; never mutated after it is built."""

    name: str
    version: int
    card: ModelCard
    engine: Engine
    record: type[BaseModel]
    single: TypeAdapter
    batch: TypeAdapter
    sha256: str
    loaded_at: datetime
    categories: dict[str, frozenset[str]] = field(default_factory=dict)
    # The column whose value keys the logged prediction, where a validated record holds it (a
    # feature's name, or ENTITY_KEY_FIELD), and the fields to take out before predicting.
    key_column: str | None = None
    key_field: str | None = None
    ignored: tuple[str, ...] = ()

    @property
    def task(self) -> str:
        return self.card.task


def load_version(ctx: Context, version: ModelVersion) -> LoadedModel:
    """Verify and load a version's engine: ONNX when validated, else the pipeline.

    The ONNX copy is preferred because loading it executes nothing; the pickle is read only
    when there is no ONNX copy, and only after its signature and sha256 verify.
    """
    card = version.card
    engine: Engine
    if card.onnx.present and "onnx" in version.files:
        engine = OnnxEngine(ctx.artifacts.read(version, "onnx"), card)
    else:
        engine = PipelineEngine(load_pipeline(ctx.artifacts.read(version, "model")), card)
    serving = ctx.settings.serving
    schema = card.feature_schema
    record = record_model(schema, serving)
    key = schema.key_column(serving.key_column)
    _, ignored = _ignored_fields(schema, key)
    return LoadedModel(
        name=version.model_name,
        version=version.version,
        card=card,
        engine=engine,
        record=record,
        single=TypeAdapter(record),
        batch=TypeAdapter(list[record], config=None),  # type: ignore[valid-type]
        sha256=version.artifact.sha256,
        loaded_at=datetime.now(UTC),
        categories={
            f.name: frozenset(f.categories or [])
            for f in card.feature_schema.features
            if f.kind == "categorical"
        },
        key_column=key,
        key_field=key if key in schema.names else (ENTITY_KEY_FIELD if key else None),
        ignored=ignored,
    )


_UNREADABLE = "cannot read the registry: "


class ModelHolder:
    """Holds the production version of one model and swaps it atomically on change."""

    def __init__(self, ctx: Context, model_name: str) -> None:
        self.ctx = ctx
        self.model_name = model_name
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self.last_check: float | None = None
        self.reloads = 0
        self._lock = threading.Lock()
        self.on_reload: list[Any] = []

    def refresh(self, *, force: bool = False) -> LoadedModel | None:
        """Load production if it changed; a version that fails to load is refused."""
        with self._lock:
            self.last_check = time.time()
            try:
                wanted = self.ctx.registry.alias_version(self.model_name, PRODUCTION)
            except NotFoundError:
                wanted = None
            except PgmlopsError as exc:
                self.last_error = f"{_UNREADABLE}{exc}"
                return self.current
            if self.last_error and self.last_error.startswith(_UNREADABLE):
                # The registry answers again: that error is over, whether or not the alias
                # moved meanwhile (a refused version sets its own error below).
                self.last_error = None
            if wanted is None:
                if self.current is None:
                    self.last_error = f"model {self.model_name!r} has no production version yet"
                return self.current
            if not force and self.current is not None and self.current.version == wanted:
                return self.current
            try:
                version = self.ctx.registry.get_version(self.model_name, wanted)
                loaded = load_version(self.ctx, version)
            except (ArtifactError, PgmlopsError) as exc:
                self.last_error = (
                    f"v{wanted} refused, still serving "
                    + (f"v{self.current.version}" if self.current else "nothing")
                    + f": {exc}"
                )
                log.error(self.last_error)
                self._notify("failed", wanted)
                return self.current
            self.current = loaded
            self.last_error = None
            self.reloads += 1
            log.info("serving %s v%d with %s", self.model_name, wanted, loaded.engine.name)
            self._notify("ok", wanted)
            return loaded

    def _notify(self, result: str, version: int) -> None:
        for callback in self.on_reload:
            callback(result, version)


def served_model_names(
    ctx: Context, names: list[str] | None = None, *, all_models: bool | None = None
) -> list[str]:
    """The models one server serves, the default (for /predict) first.

    Given names (or, without, `serving.models` / `serving.all_models`) are checked; when more
    than one model is served each must have a production version, so a typo fails at start.
    """
    serving = ctx.settings.serving
    if all_models is None:
        # Names given here (the command line) win over the settings' choice.
        all_models = serving.all_models if names is None else False
    every = all_models
    names = list(names if names is not None else serving.models)
    if every and names:
        raise ConfigError("--all-models and --model-name exclude each other: give one")
    if every:
        names = [n for n in ctx.registry.model_names() if _production(ctx, n) is not None]
        if not names:
            raise ConfigError("--all-models: no registered model has a production version")
        # The settings' model stays the default when it is among them.
        if ctx.settings.model_name in names:
            names.remove(ctx.settings.model_name)
            names.insert(0, ctx.settings.model_name)
        return names
    if not names:
        return [ctx.settings.model_name]
    seen: set[str] = set()
    for name in names:
        check_model_name(name)
        if name in seen:
            raise ConfigError(f"--model-name {name!r} is given twice (or in serving.models)")
        seen.add(name)
    if len(names) > 1:
        for name in names:
            if _production(ctx, name) is None:
                raise ConfigError(
                    f"model {name!r} (--model-name / serving.models) has no production "
                    "version: promote one first, or serve it alone"
                )
    return names


def _production(ctx: Context, name: str) -> int | None:
    try:
        return ctx.registry.alias_version(name, PRODUCTION)
    except NotFoundError:
        return None


def risk_levels(scores: list[float], bands: dict[str, float]) -> list[str]:
    """Per score, the highest band whose lower bound is at or below it (the lowest if none)."""
    ordered = sorted(bands.items(), key=lambda kv: kv[1])
    names = [name for name, _ in ordered]
    bounds = [lower for _, lower in ordered]
    return [names[max(bisect_right(bounds, s) - 1, 0)] for s in scores]


_B62 = (1 << 62) - 1


def prediction_ids(n: int) -> list[str]:
    """n time-ordered (version 7, RFC 9562) UUID strings from one read of the OS's randomness.

    Time-ordered ids land at the right edge of the predictions table's primary-key index
    instead of on a random page of it (PostgreSQL spent ~15% less per row in a hand-run test).
    """
    ms = time.time_ns() // 1_000_000
    if n == 1:
        rand = int.from_bytes(os.urandom(10), "big")
        rand_a, rand_b = (rand >> 64) & 0xFFF, rand & _B62
        h = f"{(ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b:032x}"
        return [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"]
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, :6] = np.frombuffer(ms.to_bytes(6, "big"), dtype=np.uint8)  # unix time in ms
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x70  # version 7
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 9562 variant
    h = raw.tobytes().hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-"
        f"{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def predict_records(
    model: LoadedModel,
    rows: list[dict[str, Any]],
    serving: ServingConfig,
    *,
    request_id: str | None,
    started: float,
) -> tuple[list[dict[str, Any]], list[PredictionRecord]]:
    """Predict validated rows; return the response items and the log records."""
    n = len(rows)
    keys = take_keys(model, rows)
    if n == 1:
        # One record never touches a DataFrame or a vectorised post-processing step.
        label, proba = model.engine.predict_one(rows[0])
        predicted: list[Any] = [label]
        probas: list[Any] = [proba]
    else:
        # Numbers straight into float arrays (numpy reads None as NaN), categories as objects.
        out = model.engine.predict_columns(
            {
                f.name: np.array(
                    list(map(itemgetter(f.name), rows)),
                    dtype=np.float64 if f.kind == "numeric" else object,
                )
                for f in model.card.feature_schema.features
            }
        )
        predicted = out.predicted.tolist()
        probas = [None] * n if out.proba is None else out.proba.tolist()
    latency_ms = (time.perf_counter() - started) * 1000.0
    now = datetime.now(UTC)
    task = model.card.task
    ids = prediction_ids(n)
    name, version = model.name, model.version
    confidence: list[Any] = [None] * n
    outputs: list[Any] = [None] * n
    if task == "binary":
        confidence = [abs(p - 0.5) * 2.0 for p in probas]
        risks = risk_levels(probas, serving.risk_bands)
        items = [
            {
                "prediction_id": i,
                "model": name,
                "version": version,
                "prediction": y,
                "probability": p,
                "confidence": c,
                "risk_level": r,
            }
            for i, y, p, c, r in zip(ids, predicted, probas, confidence, risks, strict=True)
        ]
    elif task == "multiclass":
        classes = model.card.classes or []
        probability = [dict(zip(classes, p, strict=True)) for p in probas]
        confidence = [max(p) for p in probas]
        risks = risk_levels(confidence, serving.risk_bands)
        outputs = [{"probabilities": p} for p in probability]
        items = [
            {
                "prediction_id": i,
                "model": name,
                "version": version,
                "prediction": y,
                "probability": p,
                "confidence": c,
                "risk_level": r,
            }
            for i, y, p, c, r in zip(ids, predicted, probability, confidence, risks, strict=True)
        ]
    else:
        items = [
            {"prediction_id": i, "model": name, "version": version, "prediction": y}
            for i, y in zip(ids, predicted, strict=True)
        ]
    if serving.unknown_categories == "flag":
        # In "reject" mode validation already refused unknown categories.
        for k, row in enumerate(rows):
            unknown = _unknown_categories(model, row)
            if unknown:
                items[k]["flags"] = {"unknown_categories": unknown}
                outputs[k] = {**(outputs[k] or {}), "unknown_categories": unknown}
    binary = task == "binary"
    records = [
        PredictionRecord(
            ids[k],
            name,
            version,
            now,
            rows[k],
            str(predicted[k]),
            probas[k] if binary else None,
            confidence[k],
            outputs[k],
            latency_ms,
            request_id,
            keys[k],
        )
        for k in range(n)
    ]
    return items, records


def take_keys(model: LoadedModel, rows: list[dict[str, Any]]) -> list[str | None]:
    """Each row's key as text; the fields the model ignores are taken out of the rows."""
    field_name, ignored = model.key_field, model.ignored
    if field_name is None and not ignored:
        return [None] * len(rows)
    keys: list[str | None] = []
    for row in rows:
        keys.append(key_text(row.get(field_name)) if field_name else None)
        for name in ignored:
            row.pop(name, None)
    return keys


def _unknown_categories(model: LoadedModel, row: dict[str, Any]) -> list[str]:
    return [
        name
        for name, cats in model.categories.items()
        if row.get(name) is not None and row[name] not in cats
    ]
