"""Fit the booster through its library's Dask interface; the result is the local class."""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from pgmlops.domain.kinds import Task
from pgmlops.domain.schema import FeatureSchema
from pgmlops.domain.training.boosting import library_fit_errors, library_of, resolve_estimator
from pgmlops.errors import ConfigError, TrainingError

if TYPE_CHECKING:  # dask is imported once cluster.require_dask has checked it is installed
    import dask.dataframe as dd

# The one place that decides: the estimators pgmlops trains through a Dask interface (as the
# local path resolves them, domain/training/boosting.py) and that interface's class.
DASK_INTERFACES = {
    "lightgbm.LGBMClassifier": "lightgbm.dask.DaskLGBMClassifier",
    "lightgbm.LGBMRegressor": "lightgbm.dask.DaskLGBMRegressor",
    "lightgbm.sklearn.LGBMClassifier": "lightgbm.dask.DaskLGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor": "lightgbm.dask.DaskLGBMRegressor",
    "xgboost.XGBClassifier": "xgboost.dask.DaskXGBClassifier",
    "xgboost.XGBRegressor": "xgboost.dask.DaskXGBRegressor",
    "xgboost.sklearn.XGBClassifier": "xgboost.dask.DaskXGBClassifier",
    "xgboost.sklearn.XGBRegressor": "xgboost.dask.DaskXGBRegressor",
}
DEFAULT_DASK_ESTIMATOR = "lightgbm"
# XGBoost's exact tree method refuses distributed training (its C++ updater says so at the
# first tree, once a second worker joins); hist and approx run on any number of workers.
_NOT_DISTRIBUTED = {"xgboost": {"tree_method": {"exact"}}}


def dask_interface(path: str, task: Task) -> str:
    """The dotted path of the Dask class that trains `path` for `task`; ConfigError if none."""
    interface = DASK_INTERFACES.get(resolve_estimator(path, task))
    if interface is None:
        raise ConfigError(
            f"estimator {path!r} has no Dask interface pgmlops trains through: with "
            "training.engine dask use lightgbm or xgboost (LGBMClassifier/LGBMRegressor, "
            "XGBClassifier/XGBRegressor)"
        )
    return interface


def dask_estimator_path(path: str | None, task: Task | None, params: dict[str, Any]) -> str:
    """The estimator path to build, if it has a Dask interface and the params suit it."""
    given = path or DEFAULT_DASK_ESTIMATOR
    for t in [task] if task else ["binary", "multiclass", "regression"]:
        dask_interface(given, t)
    for name, refused in _NOT_DISTRIBUTED.get(library_of(given) or "", {}).items():
        if params.get(name) in refused:
            raise ConfigError(
                f"training.params {name}={params[name]!r} cannot train on Dask (not distributed "
                f"in {library_of(given)}): use hist or approx, or training.engine local"
            )
    return given


def library_of_interface(interface: str) -> str:
    """'xgboost' for 'xgboost.dask.DaskXGBClassifier'."""
    return interface.split(".", 1)[0]


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


def _dask_class(interface: str) -> Any:
    module, _, name = interface.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _fit_lightgbm(
    client: Any, interface: str, local: Any, x: Any, y: dd.Series, schema: FeatureSchema
) -> Any:
    booster = _dask_class(interface)(client=client, **local.get_params())
    booster.fit(x, y.to_dask_array(lengths=True))
    return booster.to_local()


def _fit_xgboost(
    client: Any, interface: str, local: Any, x: Any, y: dd.Series, schema: FeatureSchema
) -> Any:
    """Fit on the cluster, then load the booster into the local (label-encoding) class.

    XGBoost's classifier takes labels 0..k-1 only: they are encoded in sorted order, as
    domain/xgb_labels.LabelledXGBClassifier's LabelEncoder does in a local fit.
    """
    booster = _dask_class(interface)(**local.get_params())
    # Given to the constructor, the client ends up in what xgboost.dask pickles for workers.
    booster.client = client
    labels = None
    if schema.task != "regression":
        labels = np.array(sorted(schema.classes or []), dtype=object)
        codes = {label: i for i, label in enumerate(labels)}
        y = y.map(codes, meta=(y.name, "int64"))
    booster.fit(x, y.to_dask_array(lengths=True), verbose=False)
    local.load_model(bytearray(booster.get_booster().save_raw(raw_format="ubj")))
    if labels is not None:
        local._labels = labels
    return local


_FITS = {"lightgbm": _fit_lightgbm, "xgboost": _fit_xgboost}


def fit_on_cluster(
    client: Any,
    pipeline: Pipeline,
    train_rows: dd.DataFrame,
    train_sample: pd.DataFrame,
    schema: FeatureSchema,
    interface: str,
) -> Pipeline:
    """Preprocessing fitted on the sample, the booster on every training row across workers."""
    pre = Pipeline(pipeline.steps[:-1])
    local = pipeline.steps[-1][1]
    fit = _FITS[library_of_interface(interface)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            pre.fit(train_sample[schema.names])
            width = pre.transform(train_sample[schema.names].head(2)).shape[1]
            meta = pd.DataFrame(np.zeros((0, width)), columns=[f"f{i}" for i in range(width)])
            x = train_rows[schema.names].map_partitions(
                lambda p: pd.DataFrame(pre.transform(p), columns=meta.columns), meta=meta
            )
            fitted = fit(
                client, interface, local, x.to_dask_array(lengths=True),
                train_rows[schema.target], schema,
            )  # fmt: skip
    except MemoryError as exc:
        raise TrainingError("training ran out of memory on the Dask cluster") from exc
    except (ValueError, TypeError, *library_fit_errors()) as exc:
        raise TrainingError(f"estimator failed to fit on Dask: {_first_line(exc)}") from exc
    pipeline.steps[-1] = (pipeline.steps[-1][0], fitted)
    return pipeline
