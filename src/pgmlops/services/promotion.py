"""Champion/challenger promotion, forced promotion and rollback, each audited."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.domain.metrics import Scores
from pgmlops.domain.predict import baseline_scores, to_scores
from pgmlops.domain.promotion.gates import Decision, decide
from pgmlops.domain.promotion.paired_bootstrap import row_clusters
from pgmlops.domain.registry.records import PRODUCTION, AliasEvent, ModelVersion
from pgmlops.domain.schema import coerce_features
from pgmlops.domain.training.split import on_training_side
from pgmlops.errors import ArtifactError, ConfigError, DataError, NotFoundError, PromotionRefused
from pgmlops.services.context import Context
from pgmlops.services.inference import OnnxEngine, PipelineEngine, load_pipeline


@dataclass(frozen=True)
class PromotionResult:
    """What happened: the alias move (if any) and the decision behind it."""

    model_name: str
    candidate: int
    champion: int | None
    decision: Decision | None
    event: AliasEvent
    forced: bool


def version_engine(ctx: Context, version: ModelVersion) -> PipelineEngine:
    """Load a version's pipeline after checking its signature and sha256."""
    return PipelineEngine(load_pipeline(ctx.artifacts.read(version, "model")), version.card)


def read_holdout(ctx: Context, version: ModelVersion) -> pd.DataFrame:
    """The holdout rows stored with a version at training time."""
    if "holdout" not in version.files:
        raise DataError(f"version {version.version} has no stored holdout to score on")
    data = ctx.artifacts.read(version, "holdout")
    return pd.read_parquet(io.BytesIO(data))


def holdout_scores(ctx: Context, version: ModelVersion, holdout: pd.DataFrame, target: str) -> Any:
    """A version's scores on a holdout frame (the gates compare two versions' on the same)."""
    card = version.card
    try:
        x = coerce_features(holdout, card.feature_schema)
    except DataError as exc:
        raise DataError(
            f"version {version.version} cannot score the candidate's holdout ({exc}); "
            "force it, with a reason, to promote across a schema change"
        ) from exc
    engine = version_engine(ctx, version)
    return to_scores(card, engine.predict_frame(x), holdout[target].to_numpy())


def held_out_rows(ctx: Context, version: ModelVersion) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows a version stored and never trained on: its holdout, and its validation rows.

    Versions trained before validation rows were kept have only the holdout (the second
    frame is then empty).
    """
    holdout = read_holdout(ctx, version)
    if "validation" not in version.files:
        return holdout, holdout.iloc[:0]
    data = ctx.artifacts.read(version, "validation")
    return holdout, pd.read_parquet(io.BytesIO(data))


def _trained_by(rows: pd.DataFrame, version: ModelVersion) -> np.ndarray:
    """Rows `version`'s split would have trained on (from the content hash of its features)."""
    card = version.card
    names = card.feature_schema.names
    seed = (card.training or {}).get("seed")
    if seed is None or not all(c in rows.columns for c in names):
        # Unknown split settings: assume it trained on them, so they are not used.
        return np.ones(len(rows), dtype=bool)
    return on_training_side(
        rows[names],
        test_size=card.split.test_size,
        validation_size=card.split.validation_size,
        seed=int(seed),
    )


def evaluation_rows(
    ctx: Context, candidate: ModelVersion, champion: ModelVersion | None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows neither model trained on: both versions' holdout and validation rows.

    A version's own stored rows are off its training side by construction; the other
    version's rows are kept only where its split (content hash, seed and sizes from the
    card) puts them off the training side too. With the same split settings that keeps every
    row (the hash puts a row on the same side in every dataset); a retrain with another
    seed keeps the rows both splits held out. Validation rows tuned the threshold and the
    calibration, not the fit, so the ranking metrics on them are fresh; they double the
    evaluation rows and with them the power to see a real gain (docs/promotion.md).
    Including the champion's rows means a candidate trained on bad labels cannot win by
    being judged only on its own bad labels.
    """
    hold, val = held_out_rows(ctx, candidate)
    sizes = {"candidate_holdout": len(hold), "candidate_validation": len(val)}
    if champion is None:
        own = pd.concat([hold, val], ignore_index=True)
        return own, {**sizes, "champion_holdout": 0, "rows": len(own)}
    champ_hold, champ_val = held_out_rows(ctx, champion)
    theirs = pd.concat([champ_hold, champ_val], ignore_index=True)
    sizes["champion_holdout"] = len(theirs)
    # Both models must score every row: a part needs the features of both versions (a
    # column one of them left out as constant may be missing from the other's rows).
    names = [*candidate.card.feature_schema.names, *champion.card.feature_schema.names]
    needed = list(dict.fromkeys([*names, candidate.card.target]))
    same_target = champion.card.target == candidate.card.target
    parts = [(hold, champion), (val, champion)] + ([(theirs, candidate)] if same_target else [])
    usable = [(p, other) for p, other in parts if len(p) and all(c in p for c in needed)]
    if not usable:
        raise DataError(
            f"v{candidate.version} and v{champion.version} stored no held-out rows that carry "
            "both versions' features; promote with force and a reason across a schema change",
            params=("force", "reason"),
        )
    # Each part is hashed as stored, before concat could change a column's dtype.
    kept = [p[needed][~_trained_by(p, other)] for p, other in usable]
    dropped = sum(len(p) for p, _ in usable) - sum(len(k) for k in kept)
    both = pd.concat(kept, ignore_index=True).drop_duplicates().reset_index(drop=True)
    if both.empty:
        raise DataError(
            f"every held-out row of v{candidate.version} and v{champion.version} may have "
            "trained the other version (different split settings); promote with force and a "
            "reason",
            params=("force", "reason"),
        )
    return both, {**sizes, "trained_on_by_the_other": dropped, "rows": len(both)}


def evaluate_challenge(
    ctx: Context, candidate: ModelVersion, champion: ModelVersion | None
) -> tuple[Decision, dict[str, int]]:
    """Score champion and challenger on the same fresh rows; the gates decide."""
    card = candidate.card
    rows, sizes = evaluation_rows(ctx, candidate, champion)
    target = card.target
    cand_scores = holdout_scores(ctx, candidate, rows, target)
    champ_scores = None
    if champion is not None:
        if champion.card.task != card.task:
            raise ConfigError(
                f"v{champion.version} is {champion.card.task} and v{candidate.version} is "
                f"{card.task}: they cannot be compared; force it, with a reason"
            )
        champ_scores = holdout_scores(ctx, champion, rows, target)
    if champion is None and "crossfit" in candidate.files:
        # A first version is judged on every labelled row, each scored by a model that did
        # not fit it (training rows out of fold, validation and holdout by the final model):
        # a few hundred rows give the holdout alone too little power (docs/promotion.md).
        cand_scores, clusters = read_crossfit(ctx, candidate)
        sizes = {**sizes, "crossfit_rows": len(cand_scores), "rows": len(cand_scores)}
    else:
        # Rows repeating a feature vector (panel data: one entity, many periods) are
        # resampled together, or the interval would be too narrow (docs/promotion.md).
        names = [*card.feature_schema.names]
        if champion is not None:
            names += [n for n in champion.card.feature_schema.names if n not in names]
        clusters = row_clusters(rows[[n for n in names if n in rows]])
    if clusters is not None:
        sizes = {**sizes, "distinct_vectors": int(clusters.max()) + 1 if len(clusters) else 0}
    y_true = cand_scores.y_true
    # The baseline's prior comes from the evaluation rows themselves: the best constant
    # predictor there, a slightly stricter bar than the training prior.
    base = baseline_scores(card.task, y_true, y_true, card.classes)
    policy = ctx.settings.promotion
    return decide(cand_scores, champ_scores, base, policy, clusters=clusters), sizes


def read_crossfit(ctx: Context, version: ModelVersion) -> tuple[Scores, np.ndarray | None]:
    """A version's out-of-sample scores of all its labelled rows (training's `crossfit`),
    and the rows' feature-vector labels (None for versions trained before they were kept)."""
    frame = pd.read_parquet(io.BytesIO(ctx.artifacts.read(version, "crossfit")))
    card = version.card
    columns = [c for c in frame.columns if c.startswith("proba_")]
    proba = frame[columns].to_numpy(dtype=float) if columns else None
    if proba is not None and card.task == "binary":
        proba = proba[:, -1]
    classes = tuple(card.classes) if card.classes else None
    scores = Scores(
        card.task, frame["y_true"].to_numpy(), frame["predicted"].to_numpy(), proba, classes
    )
    clusters = frame["vector"].to_numpy(dtype=np.int64) if "vector" in frame else None
    return scores, clusters


def verify_servable(ctx: Context, version: ModelVersion) -> None:
    """Refuse a version a worker could not serve: run before the alias moves, even forced.

    Every file must be inside the artifact root, intact and signed; the ONNX copy that
    workers will load must load in onnxruntime and reproduce the (verified) pipeline's
    predictions on the version's own holdout rows it was checked on when training kept it.
    """
    from pgmlops.services.training.onnx_export import TOLERANCE, check_rows, disagreement

    for role in version.files:
        ctx.artifacts.read(version, role)
    card = version.card
    if not card.onnx.present:
        return
    what = f"ONNX artifact of {version.model_name} v{version.version}"
    if "onnx" not in version.files:
        raise ArtifactError(f"{what} is named by the model card but not in the registry")
    onnx = OnnxEngine(ctx.artifacts.read(version, "onnx"), card)
    x = coerce_features(check_rows(read_holdout(ctx, version)), card.feature_schema)
    try:
        got = onnx.predict_frame(x)
    except Exception as exc:  # onnxruntime raises its own types for a damaged graph
        raise ArtifactError(f"{what} cannot predict: {type(exc).__name__}: {exc}") from exc
    diff = disagreement(card, version_engine(ctx, version).predict_frame(x), got)
    if not diff <= TOLERANCE:  # also refuses NaN
        raise ArtifactError(
            f"{what} does not reproduce the pipeline's predictions on its holdout "
            f"(max difference {diff:.2e} > {TOLERANCE:g}); refusing to serve it"
        )


def _candidate(ctx: Context, name: str, version: int | None) -> ModelVersion:
    return ctx.registry.get_version(name, version) if version else ctx.registry.latest_version(name)


def promote(
    ctx: Context,
    name: str,
    version: int | None = None,
    *,
    actor: str,
    force: bool = False,
    reason: str | None = None,
    evidence: dict[str, Any] | None = None,
) -> PromotionResult:
    """Move `production` to the candidate if the gates approve (or if forced, with a reason).

    `evidence` (e.g. the live comparison's numbers) is kept in the decision record.
    """
    if force and not (reason and reason.strip()):
        raise ConfigError("a forced promotion needs a reason: it is kept in the audit trail")
    candidate = _candidate(ctx, name, version)
    current = ctx.registry.alias_version(name, PRODUCTION)
    if current == candidate.version:
        raise ConfigError(f"{name} v{candidate.version} is already production")
    verify_servable(ctx, candidate)  # force overrides gates, never a broken artifact
    champion = ctx.registry.get_version(name, current) if current is not None else None
    decision: Decision | None = None
    sizes: dict[str, int] = {}
    try:
        decision, sizes = evaluate_challenge(ctx, candidate, champion)
    except (DataError, ConfigError):
        if not force:
            raise
    record = {**_decision_record(candidate.version, current, decision, force), "evaluation": sizes}
    if evidence is not None:
        record["evidence"] = evidence
    if decision is not None and not decision.approved and not force:
        ctx.registry.record_refusal(name, record, actor)
        failed = "; ".join(g.detail for g in decision.failed())
        raise PromotionRefused(
            f"promotion of {name} v{candidate.version} refused: {failed}", decision
        )
    event = ctx.registry.move_alias(
        name,
        PRODUCTION,
        new_version=candidate.version,
        expected_version=current,
        action="force" if force and not (decision and decision.approved) else "promote",
        actor=actor,
        reason=reason,
        decision=record,
    )
    return PromotionResult(name, candidate.version, current, decision, event, force)


def _decision_record(
    candidate: int, champion: int | None, decision: Decision | None, force: bool
) -> dict[str, Any]:
    approved = decision is not None and decision.approved
    return {
        "candidate_version": candidate,
        "champion_version": champion,
        "decision": "approved" if approved else ("forced" if force else "refused"),
        "primary_metric": decision.primary_metric if decision else "n/a",
        **({"gates": decision.to_dict()} if decision else {"gates": None}),
    }


def production_stack(events: list[AliasEvent]) -> list[int]:
    """Replay the alias history: promotions push a version, rollbacks pop one."""
    stack: list[int] = []
    for e in events:
        if e.action == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != e.new_version:
                stack.append(e.new_version)  # type: ignore[arg-type]
        elif e.new_version is not None:
            stack.append(e.new_version)
    return stack


def rollback(ctx: Context, name: str, *, actor: str, reason: str | None = None) -> AliasEvent:
    """Move `production` back to the version that held it before the current one.

    The target's artifacts are verified first (ArtifactError: nothing moves).
    """
    history = ctx.registry.alias_history(name, PRODUCTION)
    current = ctx.registry.alias_version(name, PRODUCTION)
    if current is None:
        raise NotFoundError(f"model {name!r} has no production version to roll back")
    stack = production_stack(history)
    if len(stack) < 2:
        raise NotFoundError(
            f"{name} v{current} is the first production version: nothing to roll back to"
        )
    target = stack[-2]
    # The same check as a promotion: a version workers could not serve is not restored.
    verify_servable(ctx, ctx.registry.get_version(name, target))
    return ctx.registry.move_alias(
        name,
        PRODUCTION,
        new_version=target,
        expected_version=current,
        action="rollback",
        actor=actor,
        reason=reason or f"rollback from v{current}",
    )


def production_at(events: list[AliasEvent], when: Any) -> int | None:
    """Which version held the alias at a moment, from the append-only history."""
    holder = None
    for e in events:
        if e.created_at <= when:
            holder = e.new_version
        else:
            break
    return holder
