"""MLflow interop: a version trained with a tracking URI is an MLflow run and model version."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgmlops.config import Settings
from pgmlops.services.commands import train_command
from pgmlops.services.context import Context

mlflow = pytest.importorskip("mlflow", reason="MLflow interop needs pip install 'pgmlops[mlflow]'")


def test_training_is_logged_to_a_local_mlflow_store(tmp_path: Path, churn_csv: Path) -> None:
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ctx = Context(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'pgmlops.db'}",
            artifact_root=str(tmp_path / "artifacts"),
            mlflow_tracking_uri=tracking,
        )
    )
    try:
        trained = train_command(
            ctx,
            data=str(churn_csv),
            target="Exited",
            model_name="churn",
            actor="t",
            overrides={"params": {"max_iter": 30}},
        )
    finally:
        ctx.close()
    mlflow.set_tracking_uri(tracking)
    run = mlflow.get_run(trained["mlflow_run_id"])
    assert run.data.tags["pgmlops.version"] == str(trained["version"])
    assert run.data.metrics["roc_auc"] == pytest.approx(trained["all_metrics"]["roc_auc"])
    assert run.data.params["estimator"].endswith("HistGradientBoostingClassifier")
    model = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    assert hasattr(model, "predict_proba")
    registered = mlflow.MlflowClient(tracking).get_model_version(
        "churn", trained["mlflow_model_version"]
    )
    assert registered.tags["pgmlops.version"] == str(trained["version"])
    assert registered.run_id == run.info.run_id
    assert hasattr(mlflow.sklearn.load_model(f"models:/churn/{registered.version}"), "predict")
