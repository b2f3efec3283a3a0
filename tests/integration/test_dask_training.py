"""`training.engine: dask`: a version trained on a Dask cluster is the version a local run makes.

One in-process LocalCluster (one worker: LightGBM's network is one per process) serves the
session; runs reach it through `training.dask_address`, as they would reach a real cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from pgmlops.client import Client
from pgmlops.config import Settings, TrainingConfig
from pgmlops.domain.demo_data import make_churn
from pgmlops.errors import ConfigError
from pgmlops.services.commands import train_version
from pgmlops.services.context import Context
from pgmlops.services.datasets import load_file
from pgmlops.services.retraining.runs import retrain

FEW_TREES = {"n_estimators": 20}


@pytest.fixture(scope="session")
def dask_address() -> Iterator[str]:
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    )
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture(scope="session")
def churn_parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,400 demo customers in four Parquet files (four partitions)."""
    folder = tmp_path_factory.mktemp("dask") / "churn"
    folder.mkdir()
    frame = make_churn(2_400, seed=5)
    for i in range(4):
        frame.iloc[i * 600 : (i + 1) * 600].to_parquet(folder / f"part-{i}.parquet", index=False)
    return folder


def _train(ctx: Context, data: str, address: str, query: str | None = None, **overrides):
    options = {"engine": "dask", "dask_address": address, "params": FEW_TREES, **overrides}
    return train_version(
        ctx, data=data, query=query, target="Exited", model_name="churn", overrides=options,
        actor="t",
    )  # fmt: skip


# The equivalence with a local run does not depend on the registry's database: SQLite only
# (a Dask version is registered on PostgreSQL by the table test below).
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_dask_trained_version_is_registered_servable_and_carded_like_a_local_one(
    ctx: Context, churn_parts: Path, dask_address: str, tmp_path: Path
) -> None:
    result = _train(ctx, str(churn_parts / "*.parquet"), dask_address, estimator="lightgbm")
    card = result.version.card
    assert card.training["engine"] == "dask"
    assert card.onnx.present and card.onnx.max_abs_diff < 1e-4
    assert set(result.version.files) >= {"model", "onnx", "holdout", "reference"}
    # The data's fingerprint and split are the local run's: same bytes hashed, same row keys.
    whole = pd.concat(pd.read_parquet(p) for p in sorted(churn_parts.glob("*.parquet")))
    single = tmp_path / "whole.parquet"
    whole.to_parquet(single, index=False)
    assert card.data.sha256 == load_file(str(single)).sha256
    local_version = train_version(
        ctx, data=str(single), target="Exited", model_name="churn", actor="t",
        overrides={"estimator": "lightgbm", "params": FEW_TREES, "reference_folds": 0},
    ).version  # fmt: skip
    local = local_version.card
    assert card.split == local.split
    # Exact sums over partitions: the schema matches up to the last bits of a float's std.
    for ours, theirs in zip(
        card.feature_schema.features, local.feature_schema.features, strict=True
    ):
        assert ours.std == (theirs.std and pytest.approx(theirs.std, rel=1e-9))
        assert ours.model_copy(update={"std": theirs.std}) == theirs
    assert card.feature_schema.dropped == local.feature_schema.dropped
    assert set(card.model_dump()) == set(local.model_dump())
    assert card.estimator == local.estimator == "lightgbm.sklearn.LGBMClassifier"
    assert card.metrics["roc_auc"] == pytest.approx(local.metrics["roc_auc"], abs=0.05)
    # The profile was counted over partitions: every training row, exact counts at its grid.
    profile = json.loads(ctx.artifacts.get(result.version.files["reference"]))
    by_name = {f["name"]: f for f in profile["features"]}
    assert profile["n_rows"] == card.split.train_rows
    assert sum(by_name["Geography"]["counts"].values()) == profile["n_rows"]
    age = by_name["Age"]
    assert age["grid_counts"][-1] == sum(age["psi_counts"]) == age["n"] - age["n_missing"]
    # Distinct rows: the reference is worth its rows (deff 1), as the local run records.
    local_profile = json.loads(ctx.artifacts.get(local_version.files["reference"]))
    assert profile["design"]["deff"] == 1.0
    assert profile["design"]["distinct"] == profile["n_rows"]
    assert profile["design"] == local_profile["design"]
    assert profile["output"]["design"] == local_profile["output"]["design"]
    with Client(settings=ctx.settings) as client:
        model = client.load(f"churn/{result.version.version}")
        assert len(model.predict(whole.drop(columns=["Exited"]).head(5))) == 5
        # The promotion gates judge it as any candidate: the first version passes them.
        promoted = client.promote("churn", result.version.version)
    assert promoted.decision is not None and promoted.event.action == "promote"


def test_a_postgresql_table_is_read_in_partitions_by_its_index_column(
    ctx: Context, dask_address: str
) -> None:
    if not ctx.settings.database_url.startswith("postgresql"):
        pytest.skip("reading a table in partitions by index column is tested on PostgreSQL")
    from sqlalchemy import create_engine

    from pgmlops.store.db import normalize_url

    engine = create_engine(normalize_url(ctx.settings.database_url))
    make_churn(2_000, seed=6).to_sql("customers", engine, index=False)
    engine.dispose()
    result = _train(
        ctx, ctx.settings.database_url, dask_address, query="customers",
        dask_index_column="CustomerId",
    )  # fmt: skip
    assert result.version.card.data.rows == 2_000
    assert result.version.card.data.source == "sql: SELECT * FROM customers"


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"estimator": "sklearn.ensemble.HistGradientBoostingClassifier"}, "no Dask interface"),
        ({"cv_folds": 3}, "does not cross-validate"),
        ({"imbalance": "smote"}, "SMOTE"),
        ({"query": "select * from customers", "dask_index_column": "id"}, "names a table"),
        ({"query": "customers"}, "dask_index_column"),
        ({"estimator": "xgboost.XGBRFClassifier"}, "no Dask interface"),
        # XGBoost's exact tree method does not train distributed: refused before any fit.
        ({"estimator": "xgboost", "params": {"tree_method": "exact"}}, "tree_method='exact'"),
    ],
)
def test_settings_the_dask_path_cannot_honour_are_one_config_error(
    tmp_path: Path, churn_parts: Path, overrides: dict, words: str
) -> None:
    # Each is refused before any cluster is reached (the address here answers nobody).
    options = {"engine": "dask", "dask_address": "tcp://127.0.0.1:9", **overrides}
    query = options.pop("query", None)
    data = "postgresql://u@localhost/db" if query else str(churn_parts)
    ctx = Context(_sqlite_settings(tmp_path))
    try:
        with pytest.raises(ConfigError, match=words):
            train_version(
                ctx, data=data, query=query, target="Exited", model_name="churn", actor="t",
                overrides=options,
            )  # fmt: skip
    finally:
        ctx.close()


def _sqlite_settings(tmp_path: Path, **training: object) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'pgmlops.db'}",
        artifact_root=str(tmp_path / "artifacts"),
        model_name="churn",
        training=TrainingConfig(**training),
    )


def test_xgboost_trains_through_xgboost_dask_and_its_onnx_copy_is_checked_like_a_local_one(
    tmp_path: Path, churn_parts: Path, dask_address: str
) -> None:
    # Multiclass here, regression in the retraining test below.
    target, task = "Geography", "multiclass"
    ctx = Context(_sqlite_settings(tmp_path))
    try:
        result = train_version(
            ctx, data=str(churn_parts), target=target, model_name="churn", actor="t",
            overrides={"engine": "dask", "dask_address": dask_address, "estimator": "xgboost",
                       "params": FEW_TREES, "task": task},
        )  # fmt: skip
        card = result.version.card
        # The local class, as a local run registers it: the card, ONNX check and serving
        # treat it like any XGBoost version.
        assert card.estimator == "pgmlops.domain.training.xgb_labels.LabelledXGBClassifier"
        assert card.onnx.present, card.onnx.reason
        rows = pd.read_parquet(churn_parts / "part-0.parquet").head(20)
        with Client(settings=ctx.settings) as client:
            model = client.load(f"churn/{result.version.version}")
            assert model.engine == "onnx"
            predicted = model.predict(rows.drop(columns=[target]))
        # Trained on codes 0..k-1, answered with the real labels: half the customers are in
        # France, so a model decoding the wrong label would score near 0.25.
        assert set(predicted) <= set(card.classes) == {"France", "Germany", "Spain"}
        assert card.metrics["accuracy"] > 0.4
    finally:
        ctx.close()


def test_a_dask_reference_on_repeated_rows_records_the_design_a_local_run_records(
    tmp_path: Path, dask_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgmlops.services.monitoring.run import load_profile
    from pgmlops.services.training.dask import frames

    # 800 customers, each row 3 times (panel data), shuffled so a vector's copies sit in
    # different partitions: only counts added across partitions see clusters of 3.
    k = 3
    people = make_churn(800, seed=8)
    rows = people.loc[people.index.repeat(k)].sample(frac=1.0, random_state=1)
    folder = tmp_path / "panel"
    folder.mkdir()
    for i in range(4):
        rows.iloc[i * 600 : (i + 1) * 600].to_parquet(folder / f"part-{i}.parquet", index=False)
    single = tmp_path / "panel.parquet"
    rows.to_parquet(single, index=False)
    # Held-out samples of 150 rows (of about 480 each), so the outputs' reference is a sample.
    monkeypatch.setattr(frames, "MAX_HELD_ROWS", 150)
    ctx = Context(_sqlite_settings(tmp_path))
    try:
        dask_v = _train(ctx, str(folder), dask_address, estimator="lightgbm").version
        local_v = train_version(
            ctx, data=str(single), target="Exited", model_name="churn", actor="t",
            overrides={"estimator": "lightgbm", "params": FEW_TREES, "reference_folds": 0},
        ).version  # fmt: skip
        ours, theirs = load_profile(ctx, dask_v), load_profile(ctx, local_v)
    finally:
        ctx.close()
    split = dask_v.card.split
    assert split.train_rows == local_v.card.split.train_rows
    assert ours.design is not None and theirs.design is not None
    # The split keeps a vector's copies on one side, so every training cluster has k rows:
    # deff is k exactly, not about k. Integer counts of the same rows: no tolerance needed.
    assert ours.design.deff == k and ours.design.distinct == split.train_rows // k
    assert ours.design == theirs.design
    assert ours.design.share == pytest.approx(split.train_rows / len(rows))
    assert ours.inflation == pytest.approx(ours.design.share + (1 - ours.design.share) * k)
    # The outputs' reference is the held-out samples' scores; the samples are cut on the
    # split's content keys, so a sampled vector keeps all k copies (a row sample would not).
    assert ours.output is not None and ours.output.design is not None
    held = split.validation_rows + split.holdout_rows
    assert held < len(rows) - split.train_rows  # sampled
    assert ours.output.design.rows == "held_out"
    assert ours.output.design.deff == k and ours.output.design.distinct == held // k
    assert ours.output.design.share == pytest.approx(held / len(rows))
    assert theirs.output is not None and theirs.output.design is not None
    assert theirs.output.design.deff == k


@pytest.mark.e2e
def test_an_unreachable_scheduler_is_one_line_and_a_non_zero_exit(
    tmp_path: Path, churn_parts: Path
) -> None:
    from tests.e2e.test_cli import Cli, assert_one_line_error

    cli = Cli(_sqlite_settings(tmp_path), tmp_path)
    result = cli(
        "train", "--data", str(churn_parts), "--target", "Exited", "--engine", "dask",
        PGMLOPS_TRAINING__DASK_ADDRESS="tcp://127.0.0.1:9",
    )  # fmt: skip
    assert_one_line_error(result, 2, "cannot reach the Dask scheduler", "tcp://127.0.0.1:9")


# -- retraining under training.engine dask ---------------------------------------------------


def test_a_retrain_reads_its_source_in_partitions_joins_feedback_and_trains_on_the_cluster(
    tmp_path: Path, churn_parts: Path, dask_address: str
) -> None:
    from tests.integration.test_retraining import label, log_traffic

    single = tmp_path / "churn.parquet"
    pd.concat(pd.read_parquet(p) for p in sorted(churn_parts.glob("*.parquet"))).to_parquet(
        single, index=False
    )
    ctx = Context(_sqlite_settings(tmp_path, engine="dask", dask_address=dask_address))
    steps: list[str] = []
    try:
        # The base is trained in this process; XGBoost regression is what the cluster refits.
        base = train_version(
            ctx, data=str(single), target="Exited", model_name="churn", actor="t",
            overrides={"engine": "local", "estimator": "xgboost", "params": FEW_TREES,
                       "task": "regression", "reference_folds": 0},
        ).version  # fmt: skip
        # Read again in partitions, the file hashes to the sha256 the local run recorded.
        same = retrain(ctx, "churn", mode="manual", actor="t", progress=steps.append)
        assert same.status == "skipped" and "nothing new" in same.message
        assert any(s.startswith("connecting to") for s in steps)

        frame = make_churn(40, seed=41)
        label(ctx, log_traffic(ctx, frame, base.version), frame["Exited"].tolist())
        outcome = retrain(ctx, "churn", mode="manual", actor="t")
        assert outcome.status == "succeeded", outcome.message
        assert outcome.run is not None and "warnings" not in outcome.run.data
        parts = outcome.run.data["parts"]
        assert (parts["source"]["used"], parts["feedback"]["used"]) == (2_400, 40)
        version = ctx.registry.get_version("churn", outcome.run.candidate_version)
        card = version.card
        assert card.training["engine"] == "dask" and card.data.rows == 2_440
        assert card.estimator == "xgboost.sklearn.XGBRegressor" and card.onnx.present
        assert version.source["path"] == str(single.resolve())
        assert version.source["retrain"]["base_version"] == base.version
        # The candidate recorded the combined rows' sha256: the same rows are nothing new.
        again = retrain(ctx, "churn", mode="manual", actor="t")
        assert again.status == "skipped" and "nothing new" in again.message
    finally:
        ctx.close()


def test_a_source_the_dask_reader_cannot_read_is_retrained_in_process_with_a_warning(
    tmp_path: Path,
) -> None:
    data = tmp_path / "churn.csv"
    make_churn(600, seed=7).to_csv(data, index=False)
    # No cluster is reached: the address answers nobody.
    ctx = Context(_sqlite_settings(tmp_path, engine="dask", dask_address="tcp://127.0.0.1:9"))
    try:
        train_version(
            ctx, data=str(data), target="Exited", model_name="churn", actor="t",
            overrides={"engine": "local", "estimator": "sklearn.linear_model.LogisticRegression"},
            onnx=False,
        )  # fmt: skip
        outcome = retrain(ctx, "churn", mode="manual", actor="t")
        assert outcome.status == "skipped" and outcome.run is not None
        (warning,) = outcome.run.data["warnings"]
        assert warning == (
            f"training.engine dask: v1 is retrained in this process, because its source "
            f"{data.resolve()} is not Parquet, which the Dask reader reads"
        )
        # Kept in the run: `pgmlops retrain` prints it as a `warning:` line.
        assert outcome.run.to_dict()["data"]["warnings"] == [warning]
    finally:
        ctx.close()
