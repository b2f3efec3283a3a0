"""The bench of bench/honesty.py: a temporary registry, the reference model, what a window says."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honesty_data import Draw, Source
from pgmlops.config import Settings
from pgmlops.domain.metrics import Scores, evaluate
from pgmlops.services.commands import promote_command, train_command
from pgmlops.services.context import Context
from pgmlops.services.monitoring.run import MonitoringResult, assess_window, load_profile
from pgmlops.services.serving.load import LoadedModel, load_version
from pgmlops.services.serving.prediction import predict_records
from pgmlops.store.monitoring.prediction_windows import PredictionWindow

ACTOR = "bench-honesty"


# -- the registry, the model and its windows --------------------------------------------


class Bench:
    """A temporary SQLite registry with the reference model of one source in production."""

    def __init__(self, source: Source, folder: Path, *, promotion_rows: int) -> None:
        self.source = source
        self.folder = folder
        self.promotion_rows = promotion_rows
        self.promotion_reasons: dict[str, str] = {}
        self.concept_knob = 0.0
        self.concept_text = ""
        self.ctx = Context(
            Settings(
                database_url=f"sqlite:///{folder / 'honesty.db'}",
                artifact_root=str(folder / "artifacts"),
                model_name="reference",
            )
        )
        self.settings = self.ctx.settings.monitoring
        summary = self.train(source.train, "reference", onnx=True)
        promote_command(
            self.ctx,
            model_name="reference",
            version=summary["version"],
            force=True,
            reason="bench reference model",
            actor=ACTOR,
        )
        self.mv = self.ctx.registry.get_version("reference", summary["version"])
        self.model: LoadedModel = load_version(self.ctx, self.mv)
        self.profile = load_profile(self.ctx, self.mv)
        self.card = self.mv.card
        self.names = self.card.feature_schema.names
        self.kinds = {f.name: f.kind for f in self.card.feature_schema.features}
        self.primary = self.ctx.settings.promotion.primary_for(self.card.task)

    def train(self, frame: pd.DataFrame, name: str, *, onnx: bool = False) -> dict[str, Any]:
        path = self.folder / f"{name}-{time.monotonic_ns()}.parquet"
        frame.to_parquet(path, index=False)
        try:
            return train_command(
                self.ctx,
                data=str(path),
                target=self.source.target,
                model_name=name,
                onnx=onnx,
                actor=ACTOR,
            )
        finally:
            path.unlink(missing_ok=True)

    def windows(self, frame: pd.DataFrame, rows: int) -> list[PredictionWindow]:
        """Score ``frame`` as serving does and cut it into windows of ``rows`` (all labelled)."""
        records_in = (
            frame[self.names]
            .astype(object)
            .where(frame[self.names].notna(), None)
            .to_dict("records")
        )
        _, records = predict_records(
            self.model,
            records_in,
            self.ctx.settings.serving,
            request_id=None,
            started=time.perf_counter(),
        )
        features = pd.DataFrame(
            {
                n: frame[n].to_numpy(dtype=np.float64, na_value=np.nan)
                if self.kinds[n] == "numeric"
                else frame[n]
                .astype(object)
                .where(frame[n].notna())
                .map(
                    lambda v: v if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                )
                for n in self.names
            }
        )
        now = pd.Timestamp(datetime.now(UTC))
        labels = frame[self.source.target].map(label_text)
        outputs = pd.DataFrame(
            {
                "created_at": now,
                "prediction": [str(r.prediction) for r in records],
                "probability": np.array([_num(r.probability) for r in records]),
                "confidence": np.array([_num(r.confidence) for r in records]),
                "label": labels.to_numpy(dtype=object),
            }
        )
        proba = None
        if self.card.task == "multiclass":
            classes = self.card.classes or []
            proba = np.array([[r.output["probabilities"][c] for c in classes] for r in records])
        out = []
        for start in range(0, len(frame) - rows + 1, rows):
            cut = slice(start, start + rows)
            out.append(
                PredictionWindow(
                    features=features.iloc[cut].reset_index(drop=True),
                    outputs=outputs.iloc[cut].reset_index(drop=True),
                    proba=None if proba is None else proba[cut],
                )
            )
        return out

    def assess(self, draw: Draw, rows: int, count: int, seed: int) -> list[MonitoringResult]:
        """``count`` windows of ``rows`` fresh rows, each judged by assess_window."""
        frame = draw(rows * count, seed, window=rows)
        return [
            assess_window(self.ctx, self.mv, w, self.settings, profile=self.profile)
            for w in self.windows(frame, rows)
        ]

    def true_metric(self, frame: pd.DataFrame) -> float:
        """The primary metric of the reference model on labelled rows (many, pooled)."""
        x = frame[self.names]
        out = self.model.engine.predict_frame(coerced(x, self.card))
        y = frame[self.source.target].map(label_text).to_numpy(dtype=object)
        if self.card.task == "regression":
            y = y.astype(np.float64)
        scores = Scores(
            task=self.card.task,
            y_true=y,
            predicted=out.predicted,
            proba=out.proba,
            classes=tuple(self.card.classes) if self.card.classes else None,
        )
        return float(evaluate(scores)[self.primary])

    def close(self) -> None:
        self.ctx.close()


def coerced(x: pd.DataFrame, card: Any) -> pd.DataFrame:
    from pgmlops.domain.schema import coerce_features

    return coerce_features(x, card.feature_schema)


def label_text(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value)) if abs(value) < 2**53 else str(value)
    return str(value)


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


# -- what one window says ---------------------------------------------------------------


def signals(result: MonitoringResult, trigger: Callable[..., Any] | None) -> dict[str, Any]:
    drift = result.drift
    multi = getattr(drift, "multivariate", "absent")
    est, lab = result.estimated_performance, result.labelled_performance
    out = {
        "dataset_drift": bool(result.dataset_drift),
        "features_flagged": [f.name for f in drift.features if f.drifted],
        "features_tested": len(drift.features),
        "multivariate": None if multi in ("absent", None) else bool(multi.drifted),
        "prediction_drift": result.prediction_drift,
        "confidence": (
            bool(result.confidence.get("degraded"))
            if result.confidence.get("current") is not None
            else None
        ),
        "estimated": bool(est.get("degraded")) if est.get("metric") else None,
        "labelled": bool(lab.get("degraded")),
        "estimated_metrics": est.get("metrics") or {},
        "estimated_interval": est.get("interval"),
        "labelled_metrics": lab.get("metrics") or {},
        "n_labels": lab.get("n_labels"),
    }
    if trigger is not None:
        for policy in ("any", "harmful"):
            fired, _why = trigger(result, policy)
            out[f"trigger_{policy}"] = bool(fired)
    else:
        out["trigger_today"] = bool(result.dataset_drift)
    return out


def designs(profile: Any) -> list[tuple[str, Any]]:
    """The stored sample designs of the feature and output references (repeated rows)."""
    # getattr: the bench also runs on older code (before/after rounds) without designs.
    found = [("feature", getattr(profile, "design", None))]
    if profile.output is not None:
        found.append(("output", getattr(profile.output, "design", None)))
    return [(what, design) for what, design in found if design is not None]


def drift_trigger() -> Callable[..., Any] | None:
    from pgmlops.services.retraining import triggers

    return getattr(triggers, "drift_trigger", None)
