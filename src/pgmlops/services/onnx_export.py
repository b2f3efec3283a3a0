"""Convert a fitted pipeline to ONNX and keep the copy only if it agrees with the pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.domain.card import ModelCard, OnnxInfo
from pgmlops.domain.pipeline import serving_pipeline
from pgmlops.domain.predict import Outputs
from pgmlops.services.inference import OnnxEngine, PipelineEngine

log = logging.getLogger(__name__)

TOLERANCE = 1e-4


def _convert(pipeline: Any, card: ModelCard) -> bytes:
    import onnx
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    pipe = serving_pipeline(pipeline)
    types = [
        (f.name, FloatTensorType([None, 1]) if f.kind == "numeric" else StringTensorType([None, 1]))
        for f in card.feature_schema.features
    ]
    options = {}
    if card.task != "regression":
        options[id(pipe.steps[-1][1])] = {"zipmap": False}
    model = to_onnx(
        pipe, initial_types=types, options=options, target_opset={"": 17, "ai.onnx.ml": 3}
    )
    if card.task != "regression":
        entry = model.metadata_props.add()
        entry.key = "pgmlops_classes"
        entry.value = "\x1f".join(str(c) for c in pipe.classes_)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def disagreement(card: ModelCard, ref: Outputs, got: Outputs) -> float:
    """Largest difference between two engines' outputs (regression: relative to the spread)."""
    if card.task == "regression":
        scale = max(1.0, float(np.std(ref.predicted)))
        return float(np.max(np.abs(ref.predicted - got.predicted))) / scale
    return float(np.max(np.abs(np.asarray(ref.proba) - np.asarray(got.proba))))


def export_onnx(
    pipeline: Any, card: ModelCard, holdout: pd.DataFrame
) -> tuple[bytes | None, OnnxInfo]:
    """ONNX bytes and a verdict; the copy is dropped when outputs differ by more than 1e-4."""
    if card.training.get("features"):
        return None, OnnxInfo(present=False, reason="custom feature function cannot be converted")
    try:
        data = _convert(pipeline, card)
        onnx_engine = OnnxEngine(data, card)
        ref = PipelineEngine(pipeline, card).predict_frame(holdout)
        got = onnx_engine.predict_frame(holdout)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        log.info("no ONNX copy: %s", reason)
        return None, OnnxInfo(present=False, reason=f"conversion failed: {reason}")
    diff = disagreement(card, ref, got)
    if not np.isfinite(diff) or diff > TOLERANCE:
        return None, OnnxInfo(
            present=False,
            max_abs_diff=diff,
            reason=f"ONNX outputs differ from the pipeline by {diff:.2e} on the holdout (> 1e-4)",
        )
    return data, OnnxInfo(present=True, max_abs_diff=diff)
