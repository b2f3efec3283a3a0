"""What the Python API hands back: a loaded `Model` and a `MonitoringResult` with its views."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import ValidationError as PydanticValidationError

from pgmlops.domain.registry.card import ModelCard
from pgmlops.domain.registry.records import ModelVersion
from pgmlops.domain.schema import FeatureSchema
from pgmlops.domain.serving.served_fields import BOOLEAN_NOT_NUMBER, boolean_for_number
from pgmlops.errors import ConfigError, OutOfRangeWarning, ValidationError
from pgmlops.services.inference import PipelineEngine, load_pipeline
from pgmlops.services.monitoring import run as monitoring_service
from pgmlops.services.serving.load import LoadedModel, load_version
from pgmlops.services.serving.prediction import predict_records

if TYPE_CHECKING:
    from pgmlops.services.context import Context

Rows = pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]]


class Model:
    """One registered version, verified and loaded with the engine /predict would use.

    `predict` and `predict_proba` validate rows exactly as `POST /predict` does (the feature
    schema, `serving.extra_fields`, `serving.unknown_categories`) and give the same answers;
    nothing is written to the prediction log.
    """

    def __init__(self, context: Context, version: ModelVersion, loaded: LoadedModel) -> None:
        self._context = context
        self._version = version
        self._loaded = loaded
        self._pipeline: Any = None

    @classmethod
    def load(cls, context: Context, version: ModelVersion) -> Model:
        """Verify the version's artifact (root, signature, sha256) and load its engine."""
        return cls(context, version, load_version(context, version))

    def __repr__(self) -> str:
        return f"<Model {self.name}/{self.version} {self.card.task} ({self.engine})>"

    @property
    def name(self) -> str:
        return self._version.model_name

    @property
    def version(self) -> int:
        return self._version.version

    @property
    def aliases(self) -> tuple[str, ...]:
        """The aliases that pointed at this version when it was loaded."""
        return self._version.aliases

    @property
    def engine(self) -> str:
        """ "onnx" when the validated ONNX copy serves, else "pipeline"."""
        return self._loaded.engine.name

    @property
    def card(self) -> ModelCard:
        """Everything recorded at training: task, metrics, threshold, data, libraries."""
        return self._version.card

    @property
    def schema(self) -> FeatureSchema:
        """The input contract: each feature's name, kind, range or categories."""
        return self._version.card.feature_schema

    @property
    def model_version(self) -> ModelVersion:
        """The registry's record of this version."""
        return self._version

    def predict(self, rows: Rows) -> pd.Series:
        """The predicted class (or value) per row, indexed like a DataFrame input."""
        items, index = self._answer(rows)
        return pd.Series([i["prediction"] for i in items], index=index, name="prediction")

    def predict_proba(self, rows: Rows) -> pd.DataFrame:
        """One column per class, as /predict reports them (binary: p and 1 - p)."""
        task = self.card.task
        if task == "regression":
            raise ConfigError(
                f"{self.name} v{self.version} is a regression model: no probabilities"
            )
        items, index = self._answer(rows)
        classes = list(self.card.classes or [])
        if task == "binary":
            p = [i["probability"] for i in items]
            data = {classes[0]: [1.0 - x for x in p], classes[1]: p}
            return pd.DataFrame(data, index=index, columns=classes)
        return pd.DataFrame([i["probability"] for i in items], index=index, columns=classes)

    def predict_records(self, rows: Rows) -> list[dict[str, Any]]:
        """The items /predict would answer (prediction, probability, confidence, risk, flags)."""
        return self._answer(rows)[0]

    def sklearn_pipeline(self) -> Any:
        """The fitted scikit-learn pipeline, read only after the artifact checks pass.

        Its input is a DataFrame with the schema's columns (`schema.names`).
        """
        if self._pipeline is None:
            engine = self._loaded.engine
            if isinstance(engine, PipelineEngine):
                self._pipeline = engine.pipeline
            else:
                # Served from ONNX: the pickle was never read, so verify it now.
                data = self._context.artifacts.read(self._version, "model")
                self._pipeline = load_pipeline(data)
        return self._pipeline

    def _answer(self, rows: Rows) -> tuple[list[dict[str, Any]], pd.Index | None]:
        records, index = self._validated(rows)
        serving = self._context.settings.serving
        items, _log = predict_records(
            self._loaded, records, serving, request_id=None, started=time.perf_counter()
        )
        flagged = [k for k, item in enumerate(items) if item["out_of_range"]]
        if flagged:
            first = items[flagged[0]]["out_of_range"]
            warnings.warn(
                OutOfRangeWarning(
                    f"{len(flagged)} of {len(items)} rows have fields outside what training "
                    f"saw (row {flagged[0]}: {', '.join(first)}); see each answer's "
                    "out_of_range, or set serving.out_of_range: reject to refuse them"
                ),
                stacklevel=3,
            )
        return items, index

    def _validated(self, rows: Rows) -> tuple[list[dict[str, Any]], pd.Index | None]:
        """Rows as /predict validates them: NaN is a missing value, booleans are not numbers."""
        index = None
        if isinstance(rows, pd.DataFrame):
            index = rows.index
            frame = rows.astype(object).where(rows.notna(), None)
            payload = frame.to_dict("records")
        elif isinstance(rows, Mapping):
            payload = [dict(rows)]
        elif isinstance(rows, Sequence) and not isinstance(rows, str | bytes):
            payload = [dict(r) if isinstance(r, Mapping) else r for r in rows]
        else:
            raise ValidationError("rows must be a DataFrame, a record (dict) or a list of records")
        if not payload:
            raise ValidationError("no rows to predict")
        for i, row in enumerate(payload):
            if not isinstance(row, dict):
                raise ValidationError(
                    f"row {i}: expected a record (dict), got {type(row).__name__}"
                )
        found = boolean_for_number(self.schema.numeric, payload)
        if found is not None:
            raise ValidationError(f"row {found[0]}: {found[1]}: {BOOLEAN_NOT_NUMBER}")
        try:
            return [r.__dict__ for r in self._loaded.batch.validate_python(payload)], index
        except PydanticValidationError as exc:
            raise ValidationError(_one_line(exc), exc.errors(include_url=False)) from None


def _one_line(exc: PydanticValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    loc = list(first["loc"])
    where = f"row {loc[0]}" if loc and isinstance(loc[0], int) else "row"
    field = ".".join(str(p) for p in loc[1:])
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {field + ': ' if field else ''}{first['msg']}{more}"


class MonitoringResult(monitoring_service.MonitoringResult):
    """One monitoring run, with `to_html()` (the report) and `to_frame()` (a tidy table)."""

    @classmethod
    def from_result(cls, result: monitoring_service.MonitoringResult) -> MonitoringResult:
        """The same run, with the API's views."""
        values = {k: getattr(result, k) for k in type(result).model_fields}
        return cls.model_construct(_fields_set=result.model_fields_set, **values)

    def to_html(self, history: list[monitoring_service.HistoryPoint] | None = None) -> str:
        """The self-contained HTML report `pgmlops monitor --html` writes.

        ``history`` (`Client.monitoring_history`) adds the drift and performance over time.
        """
        from pgmlops.services.monitoring.report import render_html

        return render_html(self, history or [])

    def to_frame(self) -> pd.DataFrame:
        """One row per signal (each feature's drift, outputs, confidence, performance)."""
        rows: list[dict[str, Any]] = []
        drift = self.drift
        for f in drift.features:
            rows.append(_drift_row("feature drift", f.name, f))
        if drift.output is not None:
            rows.append(_drift_row("prediction drift", drift.output.output, drift.output))
        rows.append(
            _row(
                "dataset drift",
                "share of drifted features",
                statistic=drift.share_drifted,
                flagged=drift.dataset_drift,
                detail=drift.reason,
            )
        )
        if drift.multivariate is not None:
            m = drift.multivariate
            rows.append(
                _row(
                    "multivariate drift",
                    "domain classifier AUC",
                    test=m.method,
                    statistic=m.statistic,
                    reference=m.threshold,
                    p_value=m.p_value,
                    flagged=m.drifted,
                    detail=m.reason,
                )
            )
        conf = self.confidence
        if conf.get("current") is not None:
            rows.append(
                _row(
                    "confidence",
                    "mean confidence",
                    statistic=conf.get("current"),
                    reference=conf.get("reference"),
                    p_value=conf.get("p_value"),
                    flagged=bool(conf.get("degraded")),
                )
            )
        for signal, perf in (
            ("estimated performance", self.estimated_performance),
            ("labelled performance", self.labelled_performance),
        ):
            metric = perf.get("metric")
            metrics = perf.get("metrics") or {}
            if metric and metrics:
                rows.append(
                    _row(
                        signal,
                        metric,
                        statistic=metrics.get(metric),
                        reference=(perf.get("reference") or {}).get(metric),
                        p_value=perf.get("p_value"),
                        flagged=bool(perf.get("degraded")),
                        detail=perf.get("note"),
                    )
                )
        return pd.DataFrame(rows, columns=_FRAME_COLUMNS)


_FRAME_COLUMNS = [
    "signal",
    "name",
    "test",
    "statistic",
    "reference",
    "p_value",
    "p_adjusted",
    "effect",
    "psi",
    "flagged",
    "detail",
]


def _row(signal: str, name: str, **values: Any) -> dict[str, Any]:
    return {"signal": signal, "name": name, **values}


def _drift_row(signal: str, name: str, f: Any) -> dict[str, Any]:
    effect = f.wasserstein_norm if f.wasserstein_norm is not None else f.js
    return _row(
        signal,
        name,
        test=f.test,
        statistic=f.statistic,
        p_value=f.p_value,
        p_adjusted=f.p_adjusted,
        effect=effect,
        psi=f.psi,
        flagged=f.drifted,
        detail=f.reason,
    )
