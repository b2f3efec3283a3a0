"""Convert a fitted pipeline to ONNX and keep the copy only if it agrees with the pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from pgmlops.domain.predict import Outputs
from pgmlops.domain.registry.card import ModelCard, OnnxInfo
from pgmlops.domain.training.pipeline import serving_pipeline
from pgmlops.services.inference import OnnxEngine, PipelineEngine, onnx_columns

log = logging.getLogger(__name__)

TOLERANCE = 1e-4
# The copy is compared with the pipeline on at most this many holdout rows, a seeded sample,
# as the Dask engine's held-out samples are. The largest difference grows with the rows
# checked: a LightGBM copy from 5M training rows differed by 3.1e-4 somewhere in its 1M-row
# holdout and by 2.1e-7 on a 100,000-row sample (bench/results/train-dask-5m.md), so a whole
# large holdout refused a copy a smaller one, or the Dask engine, kept.
CHECK_ROWS = 100_000


def _register_boosting_converters(model: Any) -> None:
    """Teach skl2onnx the boosting estimator at the end of the pipeline (idempotent)."""
    module = type(model).__module__
    if module.startswith("pgmlops.domain.training.xgb_labels") or module.startswith("xgboost"):
        _register_xgboost()
    elif module.startswith("lightgbm"):
        _register_lightgbm()
    elif module.startswith("catboost"):
        _register_catboost()


def _register_xgboost() -> None:
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBRegressor

    from pgmlops.domain.training.xgb_labels import LabelledXGBClassifier

    update_registered_converter(
        LabelledXGBClassifier,
        "XGBoostXGBClassifier",
        calculate_linear_classifier_output_shapes,
        convert_xgboost,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        XGBRegressor,
        "XGBoostXGBRegressor",
        calculate_linear_regressor_output_shapes,
        convert_xgboost,
    )


def _register_lightgbm() -> None:
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        LGBMRegressor,
        "LightGbmLGBMRegressor",
        calculate_linear_regressor_output_shapes,
        convert_lightgbm,
        options={"split": None},
    )


def _convert_catboost(scope: Any, operator: Any, container: Any) -> None:
    """Embed CatBoost's own ONNX export (one TreeEnsemble node) in the pipeline's graph."""
    from catboost.utils import convert_to_onnx_object
    from onnx.helper import get_attribute_value

    exported = convert_to_onnx_object(operator.raw_operator)
    node = exported.graph.node[0]
    if not node.op_type.startswith("TreeEnsemble") or len(exported.graph.initializer):
        raise ValueError(f"CatBoost exported {node.op_type}, not one tree ensemble")
    attrs = {a.name: get_attribute_value(a) for a in node.attribute}
    container.add_node(
        node.op_type,
        [operator.inputs[0].full_name],
        [out.full_name for out in operator.outputs],
        op_domain=node.domain,
        op_version=1,
        name=scope.get_unique_operator_name("CatBoost"),
        **attrs,
    )


def _parse_catboost_classifier(
    scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None
) -> list[Any]:
    """Declare label and probabilities (skl2onnx does not see CatBoost as a classifier)."""
    from skl2onnx.common.data_types import Int64TensorType, StringTensorType, guess_tensor_type

    operator = scope.declare_local_operator("CatBoostCatBoostClassifier", model)
    operator.inputs = inputs
    string_labels = np.asarray(model.classes_).dtype.kind in "OUS"
    label_type = StringTensorType() if string_labels else Int64TensorType()
    operator.outputs.append(scope.declare_local_variable("label", label_type))
    operator.outputs.append(
        scope.declare_local_variable("probabilities", guess_tensor_type(inputs[0].type))
    )
    return list(operator.outputs)


def _register_catboost() -> None:
    from catboost import CatBoostClassifier, CatBoostRegressor
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(
        CatBoostClassifier,
        "CatBoostCatBoostClassifier",
        calculate_linear_classifier_output_shapes,
        _convert_catboost,
        parser=_parse_catboost_classifier,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        CatBoostRegressor,
        "CatBoostCatBoostRegressor",
        calculate_linear_regressor_output_shapes,
        _convert_catboost,
    )


def _convert(pipeline: Any, card: ModelCard) -> bytes:
    import onnx
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    # The date step has no converter: the graph starts after it, and the engine feeds it the
    # calendar features (services/inference.py, onnx_columns).
    pipe = Pipeline([(n, s) for n, s in serving_pipeline(pipeline).steps if n != "dates"])
    _register_boosting_converters(pipe.steps[-1][1])
    types = [
        (name, FloatTensorType([None, 1]) if numeric else StringTensorType([None, 1]))
        for name, numeric in onnx_columns(card.feature_schema)
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


def check_rows(holdout: pd.DataFrame) -> pd.DataFrame:
    """The holdout rows an ONNX copy is checked on: all, or a seeded sample of CHECK_ROWS."""
    if len(holdout) <= CHECK_ROWS:
        return holdout
    return holdout.sample(n=CHECK_ROWS, random_state=0)


def export_onnx(
    pipeline: Any, card: ModelCard, holdout: pd.DataFrame
) -> tuple[bytes | None, OnnxInfo]:
    """ONNX bytes and a verdict; the copy is dropped when outputs differ by more than 1e-4."""
    if card.training.get("features"):
        return None, OnnxInfo(present=False, reason="custom feature function cannot be converted")
    holdout = check_rows(holdout)
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
            reason=f"ONNX outputs differ from the pipeline by {diff:.2e} on {len(holdout):,} "
            "holdout rows (> 1e-4)",
            checked_rows=len(holdout),
        )
    return data, OnnxInfo(present=True, max_abs_diff=diff, checked_rows=len(holdout))
