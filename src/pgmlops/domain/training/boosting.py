"""XGBoost, LightGBM and CatBoost as estimators: short names, quiet defaults, their parameters."""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any

from pgmlops.domain.schema import Task

# `--estimator lightgbm` picks the class that fits the task; dotted paths work as for any class.
LIBRARY_ESTIMATORS: dict[str, dict[Task, str]] = {
    "xgboost": {
        "binary": "xgboost.XGBClassifier",
        "multiclass": "xgboost.XGBClassifier",
        "regression": "xgboost.XGBRegressor",
    },
    "lightgbm": {
        "binary": "lightgbm.LGBMClassifier",
        "multiclass": "lightgbm.LGBMClassifier",
        "regression": "lightgbm.LGBMRegressor",
    },
    "catboost": {
        "binary": "catboost.CatBoostClassifier",
        "multiclass": "catboost.CatBoostClassifier",
        "regression": "catboost.CatBoostRegressor",
    },
}

# XGBoost's classifier accepts labels 0..k-1 only; this subclass encodes the real labels.
SUBSTITUTES = {"xgboost.XGBClassifier": "pgmlops.domain.training.xgb_labels.LabelledXGBClassifier"}

# Each library logs to stdout by default, which corrupts `--json`; a user who sets any
# parameter of the same group gets exactly what they asked for (CatBoost refuses two of them).
_QUIET: dict[str, tuple[dict[str, Any], frozenset[str]]] = {
    "xgboost": ({"verbosity": 0}, frozenset({"verbosity", "silent"})),
    "lightgbm": ({"verbose": -1}, frozenset({"verbose", "verbosity"})),
    "catboost": (
        # allow_writing_files=False: CatBoost otherwise writes catboost_info/ into the cwd.
        {"verbose": False, "allow_writing_files": False},
        frozenset({"verbose", "verbose_eval", "silent", "logging_level"}),
    ),
}


def library_of(path: str) -> str | None:
    """'lightgbm' for 'lightgbm.LGBMClassifier' (or the bare name), else None."""
    top = path.split(".", 1)[0].split(":", 1)[0]
    return top if top in LIBRARY_ESTIMATORS else None


def resolve_estimator(path: str, task: Task) -> str:
    """The dotted path behind a library's short name; any other path unchanged."""
    if path in LIBRARY_ESTIMATORS:
        return LIBRARY_ESTIMATORS[path][task]
    return path


def quiet_defaults(path: str, params: dict[str, Any]) -> dict[str, Any]:
    """Parameters that keep the library silent, unless the user set one of that group."""
    library = library_of(path)
    if library is None:
        return {}
    defaults, group = _QUIET[library]
    if group & params.keys():
        return {k: v for k, v in defaults.items() if k not in group}
    return dict(defaults)


def route_library_logs(estimator: Any) -> None:
    """Send LightGBM's native log lines (even [Fatal] ones) to logging, i.e. stderr.

    Its default logger prints to stdout, where a bad --param value would corrupt `--json`;
    XGBoost's native warnings go through Python's warnings, CatBoost's through verbose.
    """
    if type(estimator).__module__.startswith("lightgbm"):
        import lightgbm

        lightgbm.register_logger(logging.getLogger("lightgbm"))


def install_hint(path: str) -> str:
    """How to get a missing boosting library, or '' for other modules."""
    library = library_of(path)
    return f"; install it with pip install 'pgmlops[{library}]'" if library else ""


def accepted_params(estimator: Any) -> set[str]:
    """Every parameter name the estimator documents, beyond what get_params() lists.

    CatBoost's get_params() holds only the parameters already set, so its constructor's
    signature is read; LightGBM takes any of its C++ config names (and their aliases,
    e.g. verbose) as keyword arguments.
    """
    names = set(estimator.get_params(deep=False)) if hasattr(estimator, "get_params") else set()
    for cls in type(estimator).__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                names.add(p.name)
    if type(estimator).__module__.startswith("lightgbm"):
        from lightgbm.basic import _ConfigAliases

        for name, aliases in _ConfigAliases._get_all_param_aliases().items():
            names.add(name)
            names.update(aliases)
    return names


def library_fit_errors() -> tuple[type[BaseException], ...]:
    """The boosting libraries' own exception types (ValueError subclasses are caught anyway)."""
    errors: list[type[BaseException]] = []
    if "lightgbm" in sys.modules:
        from lightgbm.basic import LightGBMError

        errors.append(LightGBMError)
    if "catboost" in sys.modules:
        from catboost import CatBoostError

        errors.append(CatBoostError)
    return tuple(errors)


Advance = Callable[[int, int | None], None]


def iteration_fit_params(estimator: Any, advance: Advance | None) -> dict[str, Any]:
    """Pipeline fit parameters reporting boosting iterations to ``advance(done, total)``.

    Only where the library takes a per-fit callback that is not kept in the fitted model:
    LightGBM and CatBoost. XGBoost takes callbacks only in its constructor (they would be
    pickled with the model), and scikit-learn estimators have no hook, so those report none.
    """
    if advance is None:
        return {}
    library = library_of(f"{type(estimator).__module__}.{type(estimator).__name__}")
    params = estimator.get_params(deep=False)
    if library == "lightgbm":
        total = params.get("n_estimators")

        def lightgbm_step(env: Any) -> None:
            advance(env.iteration + 1, env.end_iteration or total)

        return {"model__callbacks": [lightgbm_step]}
    if library == "catboost":
        total = params.get("iterations") or params.get("n_estimators") or 1000

        class _CatboostStep:
            def after_iteration(self, info: Any) -> bool:
                advance(info.iteration, total)
                return True  # keep training

        return {"model__callbacks": [_CatboostStep()]}
    return {}
