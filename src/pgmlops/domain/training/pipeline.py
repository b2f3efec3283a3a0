"""Build the one fitted pipeline a version is: features, preprocessing, sampler, estimator."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.base import is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from pgmlops.domain.dates import DateFeatures
from pgmlops.domain.schema import Task
from pgmlops.domain.training.boosting import (
    SUBSTITUTES,
    accepted_params,
    install_hint,
    quiet_defaults,
    resolve_estimator,
    route_library_logs,
)
from pgmlops.errors import ConfigError, DataError

DEFAULT_ESTIMATORS: dict[Task, str] = {
    "binary": "sklearn.ensemble.HistGradientBoostingClassifier",
    "multiclass": "sklearn.ensemble.HistGradientBoostingClassifier",
    "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
}
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "sklearn.ensemble.HistGradientBoostingClassifier": {"max_iter": 200, "learning_rate": 0.08},
    "sklearn.ensemble.HistGradientBoostingRegressor": {"max_iter": 200, "learning_rate": 0.08},
}


def _number(text: str) -> int | float | str:
    """YAML 1.1 reads 1e-3 as a string; a parameter value that parses as a number is one."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """Parse `k=v` flags; values are read as YAML scalars (300 -> int, 1e-3 -> float)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"params {pair!r} must look like name=value", params=("params",))
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"params {key}: cannot read value {raw!r}", params=("params",)
            ) from exc
        if isinstance(value, str):
            value = None if value.lower() == "none" else _number(value.strip())
        out[key] = value
    return out


def import_object(path: str, what: str) -> Any:
    """Import `package.module.Name` or `package.module:name`."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{what} {path!r} is not a dotted path like 'package.module.Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"{what} {path!r}: cannot import module {module_name!r} ({exc}){install_hint(path)}"
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{what} {path!r}: module {module_name!r} has no {attr!r}") from None


def _coerce(path: str, name: str, default: Any, value: Any) -> Any:
    """Fit a value to the type of the parameter's default (31.0 -> 31 where an int is due)."""
    if value is None or default is None or isinstance(default, str):
        return value
    if isinstance(default, bool):
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise ConfigError(
            f"estimator {path!r}: parameter {name!r} takes true or false, not {value!r}"
        )
    if isinstance(default, int | float) and not isinstance(value, int | float | bool):
        kind = "an integer" if isinstance(default, int) else "a number"
        raise ConfigError(f"estimator {path!r}: parameter {name!r} takes {kind}, not {value!r}")
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def make_estimator(path: str | None, params: dict[str, Any], task: Task, seed: int) -> Any:
    """Instantiate an estimator by dotted path, checking it fits the task and takes the params."""
    path = resolve_estimator(path or DEFAULT_ESTIMATORS[task], task)
    import_object(path, "estimator")  # a missing library is named as the user wrote it
    cls = import_object(SUBSTITUTES.get(path, path), "estimator")
    if not inspect.isclass(cls) or not (hasattr(cls, "fit") and hasattr(cls, "predict")):
        raise ConfigError(f"estimator {path!r} is not a class with fit() and predict()")
    try:
        est = cls()
    except TypeError as exc:
        raise ConfigError(f"estimator {path!r} cannot be built without arguments: {exc}") from exc
    valid = accepted_params(est)
    merged = {**DEFAULT_PARAMS.get(path, {}), **quiet_defaults(path, params), **params}
    unknown = sorted(k for k in merged if k not in valid)
    if unknown:
        shown = ", ".join(sorted(valid)[:25]) + (", …" if len(valid) > 25 else "")
        raise ConfigError(f"estimator {path!r} has no parameter {unknown[0]!r} (valid: {shown})")
    if "random_state" in valid and "random_state" not in merged:
        merged["random_state"] = seed
    defaults = est.get_params(deep=False) if hasattr(est, "get_params") else {}
    merged = {k: _coerce(path, k, defaults.get(k), v) for k, v in merged.items()}
    route_library_logs(est)
    try:
        est.set_params(**merged)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"estimator {path!r}: bad parameter value: {exc}") from exc
    if task == "regression" and is_classifier(est):
        raise ConfigError(f"estimator {path!r} is a classifier but the task is regression")
    if task != "regression" and is_regressor(est):
        raise ConfigError(f"estimator {path!r} is a regressor but the task is {task}")
    return est


def load_feature_function(spec: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Load a custom `module:function` feature step (DataFrame in, DataFrame out)."""
    func = import_object(spec, "feature function")
    if not callable(func):
        raise ConfigError(f"feature function {spec!r} is not callable")
    return func


def _derived_columns(x: pd.DataFrame, func: Callable | None) -> tuple[list[str], list[str]]:
    frame = x
    if func is not None:
        try:
            frame = func(x.head(200).copy())
        except Exception as exc:
            raise DataError(f"feature function failed on the training data: {exc}") from exc
        if not isinstance(frame, pd.DataFrame):
            raise DataError("feature function must return a pandas DataFrame")
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    categorical = [c for c in frame.columns if c not in numeric]
    return numeric, categorical


def _sampler(imbalance: str, seed: int) -> Any | None:
    if imbalance != "smote":
        return None
    from imblearn.over_sampling import SMOTE

    return SMOTE(random_state=seed)


def build_pipeline(
    x: pd.DataFrame,
    estimator: Any,
    *,
    features: str | None = None,
    imbalance: str = "none",
    seed: int = 0,
    dates: dict[str, float] | None = None,
) -> Pipeline:
    """An unfitted pipeline whose steps turn raw schema columns into a prediction.

    `dates`: date columns (days since 1970) and their reference days; a first step turns each
    into calendar features, so every engine running the pipeline derives them alike.
    """
    func = load_feature_function(features) if features else None
    date_step = DateFeatures(dict(dates)) if dates else None
    sample = date_step.transform(x.head(200)) if date_step is not None else x
    numeric, categorical = _derived_columns(sample, func)
    transformers = []
    if numeric:
        num_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if not is_tree_model(estimator):
            # Trees split on raw values: scaling would only add float rounding between the
            # pipeline and its ONNX copy.
            num_steps.append(("scale", StandardScaler()))
        transformers.append(("num", Pipeline(num_steps), numeric))
    if categorical:
        # Missing categories arrive as the MISSING_CATEGORY string (see schema.coerce_features),
        # which keeps the branch convertible to ONNX (it cannot impute NaN in string columns).
        onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64)
        transformers.append(("cat", onehot, categorical))
    pre = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    steps: list[tuple[str, Any]] = []
    if date_step is not None:
        steps.append(("dates", date_step))
    if func is not None:
        steps.append(("features", FunctionTransformer(func, validate=False)))
    steps.append(("preprocess", pre))
    if imbalance == "class_weight":
        if "class_weight" not in estimator.get_params(deep=False):
            raise ConfigError(
                f"imbalance=class_weight: {type(estimator).__name__} has no class_weight; "
                "use imbalance=smote"
            )
        estimator.set_params(class_weight="balanced")
    sampler = _sampler(imbalance, seed)
    if sampler is not None:
        from imblearn.pipeline import Pipeline as ImbPipeline

        # imblearn's Pipeline resamples during fit only: predictions never pass through SMOTE.
        return ImbPipeline([*steps, ("sampler", sampler), ("model", estimator)])
    steps.append(("model", estimator))
    return Pipeline(steps)


_TREE_MARKERS = ("Tree", "Forest", "Boosting", "XGB", "LGBM", "CatBoost")


def is_tree_model(estimator: Any) -> bool:
    """Tree ensembles need no scaling and compare inputs against split thresholds."""
    return any(m in type(estimator).__name__ for m in _TREE_MARKERS)


def _round_down_float32(values: np.ndarray) -> np.ndarray:
    as32 = values.astype(np.float32)
    above = as32.astype(np.float64) > values
    as32[above] = np.nextafter(as32[above], np.float32(-np.inf))
    return as32.astype(np.float64)


def snap_thresholds_to_float32(pipeline: Any) -> None:
    """Round fitted split thresholds down to float32 without changing any prediction.

    Inputs are float32-representable (schema.as_float32_grid), and no float32 lies between a
    threshold and the largest float32 below it, so `x <= t` is unchanged for every input; the
    ONNX copy, which stores thresholds as float32, then splits exactly like the pipeline.
    """
    model = pipeline.steps[-1][1]
    for stage in getattr(model, "_predictors", []) or []:
        for predictor in stage:
            nodes = predictor.nodes
            nodes["num_threshold"] = _round_down_float32(nodes["num_threshold"])


def serving_pipeline(pipeline: Any) -> Pipeline:
    """The same fitted steps without training-only samplers (for ONNX export)."""
    steps = [(n, s) for n, s in pipeline.steps if n != "sampler"]
    return Pipeline(steps)
