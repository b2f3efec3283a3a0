"""The public Python API: a `Client` on one registry, the facade the CLI and HTTP layers call.

`pgmlops.train(...)` and the other module functions use a default client built from
`get_settings()`; make a `Client` yourself to work with another (or several) registries.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from pgmlops.client.live import LiveDeployments
from pgmlops.client.operations import Operations
from pgmlops.client.references import default_actor, parse_reference
from pgmlops.client.retraining import Retraining
from pgmlops.config import Settings, check_model_name, get_settings
from pgmlops.domain.registry.records import (
    PRODUCTION,
    AliasEvent,
    AliasState,
    ModelOverview,
    ModelVersion,
)
from pgmlops.errors import ConfigError, DataError, NotFoundError

if TYPE_CHECKING:
    import pandas as pd

    from pgmlops.model import Model, MonitoringResult
    from pgmlops.services.context import Context
    from pgmlops.services.monitoring.run import HistoryPoint
    from pgmlops.services.promotion import PromotionResult
    from pgmlops.services.training import Progress, TrainResult
    from pgmlops.store.rollback.verdicts import RollbackVerdict

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "Client",
    "compare",
    "default_actor",
    "default_client",
    "deploy",
    "load",
    "models",
    "monitor",
    "parse_reference",
    "promote",
    "rollback",
    "train",
    "versions",
]


class Client(LiveDeployments, Retraining, Operations):
    """One registry (database + artifact store), from settings or a database URL.

    `Client()` uses `get_settings()` (pgmlops.yaml and PGMLOPS_* variables);
    `Client("postgresql://...")` the same settings with another database (and, with
    `artifact_root=`, another artifact store); `Client(settings=...)` exactly those settings.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        artifact_root: str | None = None,
        context: Context | None = None,
    ) -> None:
        if context is not None:
            settings = context.settings
        base = settings or get_settings()
        update: dict[str, Any] = {}
        if database_url is not None:
            update["database_url"] = database_url
        if artifact_root is not None:
            update["artifact_root"] = artifact_root
        if update and context is not None:
            raise ConfigError("pass either context= or a database URL/artifact root, not both")
        self.settings: Settings = base.model_copy(update=update) if update else base
        self._context = context
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Client({self.context.db.describe()!r})"

    @property
    def context(self) -> Context:
        """The services' context (database, registry, artifacts), opened on first use."""
        if self._context is None:
            with self._lock:
                if self._context is None:
                    from pgmlops.services.context import Context

                    self._context = Context(self.settings)
        return self._context

    def close(self) -> None:
        """Release the database connections (the client opens them again if used)."""
        with self._lock:
            if self._context is not None:
                self._context.close()
                self._context = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _name(self, model_name: str | None) -> str:
        if model_name is None:
            return self.settings.model_name
        return check_model_name(model_name, "model_name")

    # -- training and the production alias ---------------------------------------------

    def train(
        self,
        data: pd.DataFrame | str | os.PathLike[str],
        *,
        target: str,
        model_name: str | None = None,
        **options: Any,
    ) -> ModelVersion:
        """Train, evaluate and register a candidate version; see `train_run` for options."""
        return self.train_run(data, target=target, model_name=model_name, **options).version

    def train_run(
        self,
        data: pd.DataFrame | str | os.PathLike[str],
        *,
        target: str,
        model_name: str | None = None,
        query: str | None = None,
        params: Mapping[str, Any] | list[str] | None = None,
        drop: list[str] | tuple[str, ...] = (),
        onnx: bool = True,
        actor: str | None = None,
        progress: Progress | None = None,
        sep: str | None = None,
        encoding: str | None = None,
        decimal: str | None = None,
        **options: Any,
    ) -> TrainResult:
        """Train and register; the result also carries training's warnings and its duration.

        `data` is a DataFrame, a CSV/Parquet path, or a database URL with `query=`; a CSV's
        delimiter, encoding and decimal mark are sniffed unless `sep=`/`encoding=`/`decimal=`
        are given.
        `params` are estimator parameters; other keyword options override the `training`
        settings (estimator, task, features, imbalance, outliers, cv_folds, seed, ...).
        """
        from pgmlops.services.commands import train_version

        if not isinstance(target, str) or not target:
            raise ConfigError("target= must name the column to predict")
        source: Any
        if _is_frame(data):
            source = data
        elif isinstance(data, str | os.PathLike):
            source = os.fspath(data)
        else:
            raise DataError(
                f"data must be a pandas DataFrame, a file path or a database URL, "
                f"not {type(data).__name__}"
            )
        return train_version(
            self.context,
            data=source,
            target=target,
            model_name=self._name(model_name),
            query=query,
            params=params,
            drop=list(drop),
            overrides={k: v for k, v in options.items() if v is not None},
            onnx=onnx,
            actor=actor or default_actor(),
            progress=progress,
            sep=sep,
            encoding=encoding,
            decimal=decimal,
        )

    def promote(
        self,
        model_name: str | None = None,
        version: int | None = None,
        *,
        force: bool = False,
        reason: str | None = None,
        actor: str | None = None,
    ) -> PromotionResult:
        """Make a version (default: the latest) production if the gates approve.

        Raises PromotionRefused, carrying every gate's numbers, when they do not.
        """
        from pgmlops.services.promotion import promote

        name = self._name(model_name)
        return promote(
            self.context, name, version, actor=actor or default_actor(), force=force, reason=reason
        )

    def rollback(
        self, model_name: str | None = None, *, reason: str | None = None, actor: str | None = None
    ) -> AliasEvent:
        """Move production back to the previous production version."""
        from pgmlops.services.promotion import rollback

        name = self._name(model_name)
        return rollback(self.context, name, actor=actor or default_actor(), reason=reason)

    # -- the registry ------------------------------------------------------------------

    def models(self) -> list[ModelOverview]:
        """Every registered model: production version, versions, last trained, primary metric."""
        from pgmlops.services.commands import model_overviews

        return model_overviews(self.context)

    def versions(self, model_name: str | None = None) -> list[ModelVersion]:
        """A model's versions, newest first, each with its card and aliases."""
        (summary,) = self.context.registry.list_models(self._name(model_name))
        return summary.versions

    def history(
        self, model_name: str | None = None, alias: str | None = PRODUCTION
    ) -> list[AliasEvent]:
        """Every move of a model's alias (production; None: every alias), oldest first."""
        return self.context.registry.alias_history(self._name(model_name), alias)

    def aliases(self, model_name: str | None = None) -> dict[str, AliasState]:
        """Every alias of a model: the version it points at and, for a challenger, its mode."""
        return self.context.registry.alias_states(self._name(model_name))

    def refused_rollbacks(self, model_name: str | None = None) -> list[RollbackVerdict]:
        """Automatic rollbacks not made because the previous version failed verification."""
        from pgmlops.services.rollback.watch import refused_rollbacks

        return refused_rollbacks(self.context, self._name(model_name))

    def version(self, reference: str) -> ModelVersion:
        """The registered version a reference names: "name", "name@alias" or "name/N".

        A bare name means its production version.
        """
        name, alias, number = parse_reference(reference)
        registry = self.context.registry
        if number is None:
            alias = alias or PRODUCTION
            number = registry.alias_version(name, alias)
            if number is None:
                registry.list_models(name)  # NotFoundError when the model itself is unknown
                raise NotFoundError(f"model {name!r} has no alias {alias!r} ({reference!r})")
        return registry.get_version(name, number)

    def load(self, reference: str) -> Model:
        """A version ready to predict, after its artifact checks ("churn@production", ...)."""
        from pgmlops.model import Model

        return Model.load(self.context, self.version(reference))

    # -- monitoring --------------------------------------------------------------------

    def monitor(
        self,
        model_name: str | None = None,
        *,
        window: int | str | timedelta | None = None,
        version: int | None = None,
        store: bool = True,
    ) -> MonitoringResult:
        """Drift, confidence and performance of logged traffic against the training reference.

        `window` is the newest N predictions (int), a duration ("24h", "7d" or a timedelta),
        or None for `monitoring.window`. `store=False` records no monitoring run.
        """
        from pgmlops.model import MonitoringResult
        from pgmlops.services.monitoring.run import run_monitor, window_of

        last, since = window_of(window)
        result = run_monitor(
            self.context,
            self._name(model_name),
            last=last,
            since=since,
            version=version,
            store_run=store,
        )
        return MonitoringResult.from_result(result)

    def monitoring_history(
        self, model_name: str | None = None, limit: int = 50
    ) -> list[HistoryPoint]:
        """The newest ``limit`` stored monitoring runs as time-series points, oldest first."""
        from pgmlops.services.monitoring.run import run_history

        return run_history(self.context, self._name(model_name), limit)

    def latest_monitoring_run(self, model_name: str | None = None) -> MonitoringResult | None:
        """The newest stored monitoring run, or None when the model was never monitored."""
        from pgmlops.model import MonitoringResult
        from pgmlops.services.monitoring.run import latest_run

        result = latest_run(self.context, self._name(model_name))
        return MonitoringResult.from_result(result) if result is not None else None


def _is_frame(data: Any) -> bool:
    # pandas is only imported when the caller already has it (keeps the path case cheap).
    import sys

    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(data, pandas.DataFrame)


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The process's client on `get_settings()`, made on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Client()
    return _default


# -- the module functions: `pgmlops.train(...)` etc., on the default client ----------------


def _on_default_client(method: Callable[Concatenate[Client, P], R]) -> Callable[P, R]:
    """A module function that calls `method` on the default client, with its signature."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(default_client(), *args, **kwargs)

    call.__qualname__ = method.__name__
    # help() and inspect show the method's parameters without `self`.
    signature = inspect.signature(method)
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    return call


# Each is the Client method of the same name on `default_client()`: one signature, one
# docstring, written once in the class above.
train = _on_default_client(Client.train)
promote = _on_default_client(Client.promote)
rollback = _on_default_client(Client.rollback)
deploy = _on_default_client(Client.deploy)
compare = _on_default_client(Client.compare)
models = _on_default_client(Client.models)
versions = _on_default_client(Client.versions)
load = _on_default_client(Client.load)
monitor = _on_default_client(Client.monitor)
