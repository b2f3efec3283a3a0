"""The serving side of a model: load and verify the production version, swap it on change.

`ModelHolder.current` is one immutable `LoadedModel`; a reload builds the next one aside and
swaps the reference, so a request that read `current` once answers entirely from one version.
Validating records is record_model.py's part; predicting them, prediction.py's.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, TypeAdapter

from pgmlops.config import check_model_name
from pgmlops.domain.live.modes import CHALLENGER, Deployment
from pgmlops.domain.registry.card import ModelCard
from pgmlops.domain.registry.records import PRODUCTION, AliasState, ModelVersion
from pgmlops.domain.serving.ranges import RangeCheck
from pgmlops.errors import ArtifactError, ConfigError, NotFoundError, PgmlopsError
from pgmlops.services.context import Context
from pgmlops.services.inference import Engine, OnnxEngine, PipelineEngine, load_pipeline
from pgmlops.services.serving.record_model import ENTITY_KEY_FIELD, ignored_fields, record_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """One version ready to serve; never mutated after it is built."""

    name: str
    version: int
    card: ModelCard
    engine: Engine
    record: type[BaseModel]
    single: TypeAdapter
    batch: TypeAdapter
    sha256: str
    loaded_at: datetime
    categories: dict[str, frozenset[str]] = field(default_factory=dict)
    # The column whose value keys the logged prediction, where a validated record holds it (a
    # feature's name, or ENTITY_KEY_FIELD), and the fields to take out before predicting.
    key_column: str | None = None
    key_field: str | None = None
    ignored: tuple[str, ...] = ()
    # What training saw, for each answer's out_of_range (domain/serving/ranges.py).
    ranges: RangeCheck | None = None

    @property
    def task(self) -> str:
        return self.card.task


def load_version(ctx: Context, version: ModelVersion) -> LoadedModel:
    """Verify and load a version's engine: ONNX when validated, else the pipeline.

    The ONNX copy is preferred because loading it executes nothing; the pickle is read only
    when there is no ONNX copy, and only after its signature and sha256 verify.
    """
    card = version.card
    engine: Engine
    if card.onnx.present and "onnx" in version.files:
        engine = OnnxEngine(ctx.artifacts.read(version, "onnx"), card)
    else:
        engine = PipelineEngine(load_pipeline(ctx.artifacts.read(version, "model")), card)
    serving = ctx.settings.serving
    schema = card.feature_schema
    record = record_model(schema, serving)
    key = schema.key_column(serving.key_column)
    _, ignored = ignored_fields(schema, key)
    return LoadedModel(
        name=version.model_name,
        version=version.version,
        card=card,
        engine=engine,
        record=record,
        single=TypeAdapter(record),
        batch=TypeAdapter(list[record], config=None),  # type: ignore[valid-type]
        sha256=version.artifact.sha256,
        loaded_at=datetime.now(UTC),
        categories={
            f.name: frozenset(f.categories or [])
            for f in card.feature_schema.features
            if f.kind == "categorical"
        },
        key_column=key,
        key_field=key if key in schema.names else (ENTITY_KEY_FIELD if key else None),
        ignored=ignored,
        ranges=RangeCheck.of(schema, categories=serving.unknown_categories == "flag"),
    )


@dataclass(frozen=True)
class LiveModel:
    """The challenger ready to serve beside production, with its mode; never mutated."""

    model: LoadedModel
    deployment: Deployment
    # The challenger reads the records production validated when both have the same
    # features (names and kinds); otherwise it validates the request body itself.
    same_features: bool

    @property
    def version(self) -> int:
        return self.model.version


def _features(model: LoadedModel) -> list[tuple[str, str]]:
    return [(f.name, f.kind) for f in model.card.feature_schema.features]


_UNREADABLE = "cannot read the registry: "


class ModelHolder:
    """Holds the production version of one model and swaps it atomically on change."""

    def __init__(self, ctx: Context, model_name: str) -> None:
        self.ctx = ctx
        self.model_name = model_name
        self.current: LoadedModel | None = None
        # The challenger deployed beside production (shadow or canary), if any.
        self.live: LiveModel | None = None
        self.live_error: str | None = None
        self.last_error: str | None = None
        self.last_check: float | None = None
        self.reloads = 0
        self._lock = threading.Lock()
        self.on_reload: list[Any] = []

    def refresh(self, *, force: bool = False) -> LoadedModel | None:
        """Load production if it changed; a version that fails to load is refused."""
        with self._lock:
            self.last_check = time.time()
            try:
                states = self.ctx.registry.alias_states(self.model_name)
            except NotFoundError:
                states = {}
            except PgmlopsError as exc:
                self.last_error = f"{_UNREADABLE}{exc}"
                return self.current
            state = states.get(PRODUCTION)
            wanted = state.version if state else None
            try:
                return self._refresh_production(wanted, force)
            finally:
                self._refresh_live(states.get(CHALLENGER), force)

    def _refresh_production(self, wanted: int | None, force: bool) -> LoadedModel | None:
        """Load production if it moved; a version that fails to load is refused."""
        if self.last_error and self.last_error.startswith(_UNREADABLE):
            # The registry answers again: that error is over, whether or not the alias
            # moved meanwhile (a refused version sets its own error below).
            self.last_error = None
        if wanted is None:
            if self.current is None:
                self.last_error = f"model {self.model_name!r} has no production version yet"
            return self.current
        if not force and self.current is not None and self.current.version == wanted:
            return self.current
        try:
            version = self.ctx.registry.get_version(self.model_name, wanted)
            loaded = load_version(self.ctx, version)
        except (ArtifactError, PgmlopsError) as exc:
            self.last_error = (
                f"v{wanted} refused, still serving "
                + (f"v{self.current.version}" if self.current else "nothing")
                + f": {exc}"
            )
            log.error(self.last_error)
            self._notify("failed", wanted)
            return self.current
        self.current = loaded
        self.last_error = None
        self.reloads += 1
        log.info("serving %s v%d with %s", self.model_name, wanted, loaded.engine.name)
        self._notify("ok", wanted)
        return loaded

    def _refresh_live(self, state: AliasState | None, force: bool) -> None:
        """Follow the challenger alias; a challenger that fails to load is left out, alone.

        Production keeps answering whatever happens here: the error is kept for /health and
        counted as a reload failure of role challenger.
        """
        deployment = Deployment.from_dict(state.deployment) if state else None
        production = self.current
        if state is None or deployment is None or production is None:
            self.live, self.live_error = None, None
            return
        live = self.live
        if live is not None and live.version == state.version and not force:
            if live.deployment != deployment or live.same_features != (
                _features(live.model) == _features(production)
            ):
                self.live = LiveModel(
                    live.model, deployment, _features(live.model) == _features(production)
                )
            return
        try:
            version = self.ctx.registry.get_version(self.model_name, state.version)
            loaded = load_version(self.ctx, version)
        except (ArtifactError, PgmlopsError) as exc:
            self.live = None
            self.live_error = f"challenger v{state.version} not loaded: {exc}"
            log.error(self.live_error)
            self._notify("challenger_failed", state.version)
            return
        self.live = LiveModel(loaded, deployment, _features(loaded) == _features(production))
        self.live_error = None
        log.info(
            "challenger %s v%d (%s) with %s",
            self.model_name,
            state.version,
            deployment.describe(),
            loaded.engine.name,
        )
        self._notify("challenger_ok", state.version)

    def _notify(self, result: str, version: int) -> None:
        for callback in self.on_reload:
            callback(result, version)


def served_model_names(
    ctx: Context, names: list[str] | None = None, *, all_models: bool | None = None
) -> list[str]:
    """The models one server serves, the default (for /predict) first.

    Given names (or, without, `serving.models` / `serving.all_models`) are checked; when more
    than one model is served each must have a production version, so a typo fails at start.
    """
    serving = ctx.settings.serving
    if all_models is None:
        # Names given here (the command line) win over the settings' choice.
        all_models = serving.all_models if names is None else False
    every = all_models
    names = list(names if names is not None else serving.models)
    if every and names:
        raise ConfigError(
            "all_models and names exclude each other: give one", params=("all_models", "names")
        )
    if every:
        names = [n for n in ctx.registry.model_names() if _production(ctx, n) is not None]
        if not names:
            raise ConfigError(
                "all_models: no registered model has a production version", params=("all_models",)
            )
        # The settings' model stays the default when it is among them.
        if ctx.settings.model_name in names:
            names.remove(ctx.settings.model_name)
            names.insert(0, ctx.settings.model_name)
        return names
    if not names:
        return [ctx.settings.model_name]
    seen: set[str] = set()
    for name in names:
        check_model_name(name)
        if name in seen:
            raise ConfigError(
                f"model {name!r} is given twice in names (or in serving.models)", params=("names",)
            )
        seen.add(name)
    if len(names) > 1:
        for name in names:
            if _production(ctx, name) is None:
                raise ConfigError(
                    f"model {name!r} (names / serving.models) has no production "
                    "version: promote one first, or serve it alone",
                    params=("names",),
                )
    return names


def _production(ctx: Context, name: str) -> int | None:
    try:
        return ctx.registry.alias_version(name, PRODUCTION)
    except NotFoundError:
        return None
