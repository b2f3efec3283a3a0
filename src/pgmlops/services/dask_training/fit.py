"""Fit the booster through its library's Dask interface; the result is the local class."""

from __future__ import annotations

import warnings
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from pgmlops.domain.boosting import library_fit_errors, resolve_estimator
from pgmlops.domain.kinds import Task
from pgmlops.domain.schema import FeatureSchema
from pgmlops.errors import ConfigError, TrainingError

# The estimators pgmlops trains through a Dask interface, and that interface's class.
DASK_INTERFACES = {
    "lightgbm.LGBMClassifier": "DaskLGBMClassifier",
    "lightgbm.LGBMRegressor": "DaskLGBMRegressor",
    "lightgbm.sklearn.LGBMClassifier": "DaskLGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor": "DaskLGBMRegressor",
}
DEFAULT_DASK_ESTIMATOR = "lightgbm"


def dask_estimator_path(path: str | None, task: Task | None) -> str:
    """The estimator path to build, if it has a Dask interface; ConfigError otherwise."""
    given = path or DEFAULT_DASK_ESTIMATOR
    tasks: list[Task] = [task] if task else ["binary", "regression"]
    if all(resolve_estimator(given, t) in DASK_INTERFACES for t in tasks):
        return given
    raise ConfigError(
        f"estimator {given!r} has no Dask interface pgmlops trains through: with "
        "training.engine dask use lightgbm (lightgbm.LGBMClassifier or LGBMRegressor)"
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def force_categories(pipeline: Pipeline, schema: FeatureSchema) -> None:
    """One-hot columns for every category counted over all rows, not only the sample's."""
    pre = pipeline.named_steps.get("preprocess")
    if pre is None or "features" in pipeline.named_steps:
        return  # a custom feature step derives its own columns: they are learned from the sample
    for name, step, columns in pre.transformers:
        if name == "cat":
            cats = [schema.feature(c).categories or [] for c in columns]
            step.set_params(categories=[np.asarray(c, dtype=object) for c in cats])


def fit_on_cluster(
    client: Any,
    pipeline: Pipeline,
    train_rows: dd.DataFrame,
    train_sample: pd.DataFrame,
    schema: FeatureSchema,
) -> Pipeline:
    """Preprocessing fitted on the sample, the booster on every training row across workers."""
    import lightgbm.dask

    pre = Pipeline(pipeline.steps[:-1])
    local = pipeline.steps[-1][1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            pre.fit(train_sample[schema.names])
            width = pre.transform(train_sample[schema.names].head(2)).shape[1]
            meta = pd.DataFrame(np.zeros((0, width)), columns=[f"f{i}" for i in range(width)])
            x = train_rows[schema.names].map_partitions(
                lambda p: pd.DataFrame(pre.transform(p), columns=meta.columns), meta=meta
            )
            y = train_rows[schema.target]
            booster_cls = getattr(lightgbm.dask, DASK_INTERFACES[_local_path(local)])
            booster = booster_cls(client=client, **local.get_params())
            booster.fit(x.to_dask_array(lengths=True), y.to_dask_array(lengths=True))
            fitted = booster.to_local()
    except MemoryError as exc:
        raise TrainingError("training ran out of memory on the Dask cluster") from exc
    except (ValueError, TypeError, *library_fit_errors()) as exc:
        raise TrainingError(f"estimator failed to fit on Dask: {_first_line(exc)}") from exc
    pipeline.steps[-1] = (pipeline.steps[-1][0], fitted)
    return pipeline


def _local_path(estimator: Any) -> str:
    cls = type(estimator)
    return f"{cls.__module__}.{cls.__name__}"
