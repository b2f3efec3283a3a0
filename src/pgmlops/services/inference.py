"""Inference engines: onnxruntime when a validated ONNX copy exists, else the pipeline."""

from __future__ import annotations

import io
from typing import Any, Protocol

import numpy as np
import pandas as pd

from pgmlops.domain.dates import PARTS as DATE_PARTS
from pgmlops.domain.dates import date_features
from pgmlops.domain.predict import Outputs, class_columns, predict_outputs
from pgmlops.domain.registry.card import ModelCard
from pgmlops.domain.schema import MISSING_CATEGORY, FeatureSchema, coerce_features
from pgmlops.errors import ArtifactError


class Engine(Protocol):
    """Anything that maps coerced feature columns to Outputs."""

    name: str

    def predict_frame(self, x: pd.DataFrame) -> Outputs: ...

    def predict_columns(self, columns: dict[str, np.ndarray]) -> Outputs: ...

    def predict_one(self, row: dict[str, Any]) -> tuple[Any, Any]: ...


def load_pipeline(data: bytes) -> Any:
    """Unpickle a pipeline whose bytes have already passed their sha256 check."""
    import joblib

    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:
        raise ArtifactError(
            f"model artifact cannot be loaded: {type(exc).__name__}: {exc}"
        ) from exc


def dump_pipeline(pipeline: Any) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(pipeline, buf, compress=3)
    return buf.getvalue()


class PipelineEngine:
    """Runs the fitted scikit-learn pipeline (works for every estimator)."""

    name = "pipeline"

    def __init__(self, pipeline: Any, card: ModelCard) -> None:
        self.pipeline = pipeline
        self.card = card

    def predict_frame(self, x: pd.DataFrame) -> Outputs:
        return predict_outputs(self.pipeline, self.card, x)

    def predict_columns(self, columns: dict[str, np.ndarray]) -> Outputs:
        frame = pd.DataFrame(columns, columns=self.card.feature_schema.names)
        return self.predict_frame(coerce_features(frame, self.card.feature_schema))

    def predict_one(self, row: dict[str, Any]) -> tuple[Any, Any]:
        """(prediction, probability) of one record as plain Python values."""
        out = self.predict_columns({k: [v] for k, v in row.items()})
        return out.predicted.tolist()[0], None if out.proba is None else out.proba.tolist()[0]


def onnx_columns(schema: FeatureSchema) -> list[tuple[str, bool]]:
    """The ONNX graph's inputs as (name, numeric?): a date column is its five calendar features.

    The graph starts after the pipeline's date step: onnxruntime is fed the features that
    step derives, computed by the same function (domain/dates.py).
    """
    out: list[tuple[str, bool]] = []
    for spec in schema.features:
        if spec.date is not None:
            out += [(f"{spec.name}__{part}", True) for part in DATE_PARTS]
        else:
            out.append((spec.name, spec.kind == "numeric"))
    return out


def _as_floats(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return values.astype(np.float64)


def onnx_feeds(
    schema: FeatureSchema, columns: dict[str, Any], inputs: list[str] | None = None
) -> dict[str, np.ndarray]:
    """One (n, 1) tensor per graph input, named as the graph's inputs (default: onnx_columns)."""
    feeds: dict[str, np.ndarray] = {}
    k = 0
    for spec in schema.features:
        values = np.asarray(columns[spec.name])
        if spec.date is not None:
            parts = date_features(_as_floats(values), spec.date.reference_days)
            for part in DATE_PARTS:
                key = inputs[k] if inputs else f"{spec.name}__{part}"
                feeds[key] = parts[part].astype(np.float32).reshape(-1, 1)
                k += 1
            continue
        key = inputs[k] if inputs else spec.name
        k += 1
        if spec.kind == "numeric":
            feeds[key] = _as_floats(values).astype(np.float32).reshape(-1, 1)
        else:
            arr = values.astype(object).reshape(-1, 1)
            feeds[key] = np.where(pd.isna(arr), MISSING_CATEGORY, arr).astype(str).astype(object)
    return feeds


def onnx_row_feeds(
    schema: FeatureSchema, row: dict[str, Any], inputs: list[str] | None = None
) -> dict[str, np.ndarray]:
    """The single-record fast path: (1, 1) tensors straight from a validated dict.

    For a schema without date columns (onnx_feeds handles those).
    """
    feeds: dict[str, np.ndarray] = {}
    for k, spec in enumerate(schema.features):
        key = inputs[k] if inputs else spec.name
        value = row.get(spec.name)
        if spec.kind == "numeric":
            feeds[key] = np.array([[np.nan if value is None else value]], dtype=np.float32)
        else:
            text = MISSING_CATEGORY if value is None else str(value)
            feeds[key] = np.array([[text]], dtype=object)
    return feeds


class OnnxEngine:
    """Runs the validated ONNX copy with onnxruntime: microseconds per row, no DataFrame."""

    name = "onnx"

    def __init__(self, model_bytes: bytes, card: ModelCard, *, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # One thread per session: the server runs one process per core already.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(
                model_bytes, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ArtifactError(f"ONNX artifact cannot be loaded: {exc}") from exc
        self.card = card
        # skl2onnx turns names like "petal width (cm)" into identifiers; inputs keep the
        # order of the feature schema, so feeds are named by position.
        names = [name for name, _ in onnx_columns(card.feature_schema)]
        inputs = [i.name for i in self.session.get_inputs()]
        if len(inputs) != len(names):
            raise ArtifactError(
                f"ONNX artifact has {len(inputs)} inputs, the feature schema {len(names)}"
            )
        self._inputs = None if inputs == names else inputs
        self._dates = bool(card.feature_schema.date_references)
        outputs = [o.name for o in self.session.get_outputs()]
        self._output = "variable" if card.task == "regression" else "probabilities"
        if self._output not in outputs:
            self._output = outputs[-1]
        self._task = card.task
        self._classes = np.array(card.classes or [], dtype=object)
        self._threshold = 0.5 if card.threshold is None else card.threshold
        self._order = None
        if card.task != "regression":
            # skl2onnx writes class labels in the estimator's order; reorder to the card's.
            labels = self._labels()
            self._order = class_columns(labels, card.classes or []) if labels else None
            if self._order is not None and (self._order == np.arange(len(self._order))).all():
                self._order = None
        # Column of the positive class, for the single-record path.
        self._positive = 1 if self._order is None or card.task != "binary" else int(self._order[1])

    def _labels(self) -> list[str] | None:
        meta = self.session.get_modelmeta().custom_metadata_map
        raw = meta.get("pgmlops_classes")
        return raw.split("\x1f") if raw else None

    def predict_frame(self, x: pd.DataFrame) -> Outputs:
        return self.predict_columns({c: x[c].to_numpy() for c in x.columns})

    def predict_columns(self, columns: dict[str, np.ndarray]) -> Outputs:
        return self._outputs(onnx_feeds(self.card.feature_schema, columns, self._inputs))

    def predict_one(self, row: dict[str, Any]) -> tuple[Any, Any]:
        """(prediction, probability) of one record as plain Python values."""
        schema = self.card.feature_schema
        if self._dates:
            feeds = onnx_feeds(schema, {n: [row.get(n)] for n in schema.names}, self._inputs)
        else:
            feeds = onnx_row_feeds(schema, row, self._inputs)
        (out,) = self.session.run([self._output], feeds)
        first = out[0].tolist()
        if self._task == "regression":
            return float(first[0] if isinstance(first, list) else first), None
        if self._task == "binary":
            p = first[self._positive]
            return self._classes[1 if p >= self._threshold else 0], p
        proba = first if self._order is None else [first[k] for k in self._order]
        return self._classes[max(range(len(proba)), key=proba.__getitem__)], proba

    def _outputs(self, feeds: dict[str, np.ndarray]) -> Outputs:
        (out,) = self.session.run([self._output], feeds)
        if self._task == "regression":
            return Outputs(predicted=np.asarray(out, dtype=float).reshape(-1), proba=None)
        proba = np.asarray(out, dtype=float)
        if self._order is not None:
            proba = proba[:, self._order]
        if self._task == "binary":
            p = proba[:, 1]
            return Outputs(
                predicted=np.where(p >= self._threshold, self._classes[1], self._classes[0]),
                proba=p,
            )
        return Outputs(predicted=self._classes[np.argmax(proba, axis=1)], proba=proba)
