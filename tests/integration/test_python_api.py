"""The Python API (`pgmlops.Client`, `load`, `Model`, `monitor`) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pgmlops import Client
from pgmlops.cli import app as cli_app
from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.registry.card import ModelCard
from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.errors import ArtifactError, ConfigError, NotFoundError, ValidationError
from pgmlops.model import Model, MonitoringResult
from pgmlops.services.commands import train_command
from pgmlops.services.context import Context
from pgmlops.services.serving.prediction import predict_records
from pgmlops.store.prediction_log.predictions import PredictionStore
from tests.tamper import strip_signatures

ACTOR = "test"


@pytest.fixture(scope="session")
def churn_version(
    tmp_path_factory: pytest.TempPathFactory, churn_csv: Path
) -> tuple[ModelCard, dict[str, bytes]]:
    """One churn model (with its ONNX copy) trained per session: its card and artifact bytes."""
    root = tmp_path_factory.mktemp("api-trained")
    settings = Settings(
        database_url=f"sqlite:///{root / 'train.db'}",
        artifact_root=str(root / "artifacts"),
        model_name="churn",
    )
    ctx = Context(settings)
    try:
        trained = train_command(
            ctx, data=str(churn_csv), target="Exited", model_name="churn", actor=ACTOR
        )
        mv = ctx.registry.get_version("churn", trained["version"])
        assert mv.card.onnx.present
        return mv.card, {key: ctx.artifacts.get(f) for key, f in mv.files.items()}
    finally:
        ctx.close()


def register(client: Client, trained: tuple[ModelCard, dict[str, bytes]], name: str) -> int:
    """Register the session's model under `name` in the client's registry as production."""
    card, blobs = trained
    ctx = client.context
    files = {key: ctx.artifacts.put(data) for key, data in blobs.items()}
    card = card.model_copy(update={"model_name": name})
    sign = lambda number, fs: ctx.artifacts.sign_files(name, number, fs)  # noqa: E731
    version = ctx.registry.create_version(name, files, card, ACTOR, sign=sign).version
    # The alias is moved directly: promotion (and its gates) is not what these tests are about.
    registry = ctx.registry
    registry.move_alias(
        name,
        PRODUCTION,
        new_version=version,
        expected_version=registry.alias_version(name, PRODUCTION),
        action="force",
        actor=ACTOR,
        reason="test registration",
    )
    return version


@pytest.fixture
def client(settings: Settings):
    with Client(settings=settings) as c:
        yield c


@pytest.fixture
def rows() -> pd.DataFrame:
    return make_churn(40, seed=9)


def test_load_by_alias_version_and_bare_name_give_the_same_answers(
    client: Client, churn_version, rows: pd.DataFrame
) -> None:
    version = register(client, churn_version, "churn")
    loaded = [client.load(ref) for ref in ("churn@production", f"churn/{version}", "churn")]
    assert {(m.name, m.version) for m in loaded} == {("churn", version)}
    first = loaded[0]
    assert first.engine == "onnx" and first.card.task == "binary"
    x = rows[first.schema.names]
    answers = [m.predict_proba(x) for m in loaded]
    for other in answers[1:]:
        pd.testing.assert_frame_equal(answers[0], other)
    proba = answers[0]
    assert list(proba.columns) == first.card.classes
    assert np.allclose(proba.sum(axis=1), 1.0)
    predicted = first.predict(x)
    assert predicted.index.equals(x.index)
    positive = first.card.classes[1]
    expected = np.where(proba[positive] >= first.card.threshold, positive, first.card.classes[0])
    assert predicted.tolist() == expected.tolist()
    # One record takes the single-row path of /predict; it must agree with the batch path.
    one = first.predict_records(x.iloc[[3]].to_dict("records")[0])
    assert one[0]["prediction"] == predicted.iloc[3]
    assert one[0]["probability"] == pytest.approx(proba[positive].iloc[3], abs=1e-6)


BAD_REFERENCES = [
    ("churn@nope", NotFoundError, "no alias 'nope'"),
    ("churn/x", ConfigError, "'x' is not a positive whole number"),
    ("churn/0", ConfigError, "not a positive whole number"),
    ("churn/99", NotFoundError, "no version 99"),
    ("ghost", NotFoundError, "'ghost' is not registered"),
    ("ghost@production", NotFoundError, "'ghost' is not registered"),
    ("churn@", ConfigError, "names no alias"),
    ("a@b/c", ConfigError, "is not a model reference"),
    ("bad name", ConfigError, "is not a model name"),
]


def test_bad_references_are_refused_in_one_line(client: Client, churn_version) -> None:
    register(client, churn_version, "churn")
    for reference, error, words in BAD_REFERENCES:
        with pytest.raises(error) as caught:
            client.load(reference)
        assert words in str(caught.value), reference
        assert "\n" not in str(caught.value)


def test_predict_validates_rows_as_the_http_api_does(
    client: Client, churn_version, rows: pd.DataFrame
) -> None:
    register(client, churn_version, "churn")
    model = client.load("churn")
    x = rows[model.schema.names]
    with pytest.raises(ValidationError, match=r"^row 0: Exited: Extra inputs are not permitted"):
        model.predict(rows[[*model.schema.names, "Exited"]])
    with pytest.raises(ValidationError, match="row 0: Age: Input should be a number, not a bool"):
        model.predict(x.head(2).assign(Age=True))
    with pytest.raises(ValidationError, match="no rows to predict"):
        model.predict(x.head(0))
    # A missing value (NaN in a frame) is a null, as in JSON, not a refusal.
    holes = x.head(3).astype(object)
    holes.iloc[0, 0] = np.nan
    assert len(model.predict(holes)) == 3


def test_sklearn_pipeline_is_the_fitted_pipeline_and_is_refused_when_tampered(
    client: Client, churn_version, rows: pd.DataFrame
) -> None:
    version = register(client, churn_version, "churn")
    model = client.load(f"churn/{version}")
    assert model.engine == "onnx"  # so the pickle has not been read yet
    x = rows[model.schema.names]
    pipeline = model.sklearn_pipeline()
    assert type(pipeline).__name__ == "Pipeline"
    ours = pipeline.predict_proba(x)[:, list(pipeline.classes_).index(model.card.classes[1])]
    assert np.allclose(ours, model.predict_proba(x)[model.card.classes[1]], atol=1e-4)

    # Someone with write access to the artifact folder changes the pickle's bytes.
    blob = Path(model.model_version.files["model"].uri)
    blob.write_bytes(blob.read_bytes() + b"!")
    tampered = client.load(f"churn/{version}")  # ONNX still verifies and serves
    with pytest.raises(ArtifactError, match="integrity"):
        tampered.sklearn_pipeline()

    # Someone with write access to the database removes the signatures.
    strip_signatures(client.context, "churn", version)
    with pytest.raises(ArtifactError, match="unsigned"):
        client.load(f"churn/{version}")


def test_one_process_uses_two_registries(
    settings: Settings, churn_version, rows: pd.DataFrame, tmp_path: Path
) -> None:
    other_db = f"sqlite:///{tmp_path / 'second.db'}"
    with (
        Client(settings=settings) as first,
        Client(other_db, artifact_root=str(tmp_path / "second-artifacts")) as second,
    ):
        register(first, churn_version, "churn")
        register(second, churn_version, "attrition")
        register(second, churn_version, "attrition")
        assert [m.name for m in first.models()] == ["churn"]
        assert [(m.name, m.versions) for m in second.models()] == [("attrition", 2)]
        with pytest.raises(NotFoundError):
            second.load("churn")
        a, b = first.load("churn"), second.load("attrition@production")
        assert (a.name, b.name, b.version) == ("churn", "attrition", 2)
        x = rows[a.schema.names]
        assert a.predict(x).tolist() == b.predict(x).tolist()


def test_models_lists_every_registered_model_in_python_and_in_the_cli(
    client: Client, churn_version, settings: Settings
) -> None:
    register(client, churn_version, "churn")
    register(client, churn_version, "churn")
    card, blobs = churn_version
    ctx = client.context
    files = {key: ctx.artifacts.put(data) for key, data in blobs.items()}
    sign = lambda number, fs: ctx.artifacts.sign_files("upsell", number, fs)  # noqa: E731
    ctx.registry.create_version(
        "upsell", files, card.model_copy(update={"model_name": "upsell"}), ACTOR, sign=sign
    )
    overview = {m.name: m for m in client.models()}
    assert set(overview) == {"churn", "upsell"}
    assert (overview["churn"].production_version, overview["churn"].versions) == (2, 2)
    assert (overview["upsell"].production_version, overview["upsell"].versions) == (None, 1)
    assert overview["churn"].primary_metric == "roc_auc"
    assert overview["churn"].primary_value == card.metrics["roc_auc"]
    assert [v.version for v in client.versions("churn")] == [2, 1]

    env = {"PGMLOPS_DATABASE_URL": settings.database_url}
    env["PGMLOPS_ARTIFACT_ROOT"] = settings.artifact_root
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["models", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    shown = {m["name"]: m for m in json.loads(listed.stdout)["models"]}
    assert shown["churn"]["production_version"] == 2 and shown["churn"]["versions"] == 2
    assert shown["upsell"]["production_version"] is None
    table = runner.invoke(cli_app, ["models"], env=env)
    assert table.exit_code == 0 and "churn" in table.stdout and "upsell" in table.stdout
    one = runner.invoke(cli_app, ["models", "--model-name", "upsell", "--json"], env=env)
    assert [v["version"] for v in json.loads(one.stdout)["models"][0]["versions"]] == [1]


def test_version_flag_prints_the_package_version() -> None:
    from pgmlops import __version__

    done = CliRunner().invoke(cli_app, ["--version"])
    assert done.exit_code == 0 and done.stdout.strip() == f"pgmlops {__version__}"


def test_monitor_returns_a_result_with_a_report_and_a_tidy_frame(
    client: Client, churn_version
) -> None:
    version = register(client, churn_version, "churn")
    ctx = client.context
    served = client.load("churn")
    traffic = make_churn(1_500, seed=31, numeric_shift=0.8)
    names = served.schema.names
    records = traffic[names].astype(object).where(traffic[names].notna(), None)
    from pgmlops.services.serving.load import load_version

    loaded = load_version(ctx, served.model_version)
    _, logged = predict_records(
        loaded,
        records.to_dict("records"),
        ctx.settings.serving,
        request_id=None,
        started=time.perf_counter(),
    )
    PredictionStore(ctx.db).write_batch(logged)

    result = client.monitor("churn", window=1_000, store=False)
    assert isinstance(result, MonitoringResult)
    assert result.version == version and result.window["rows"] == 1_000
    assert result.run_id is None and client.latest_monitoring_run("churn") is None
    assert "<html" in result.to_html().lower()
    frame = result.to_frame()
    drifted = frame[(frame.signal == "feature drift") & frame.flagged]
    assert set(drifted.name) == set(result.drift.drifted_features) and len(drifted) > 0
    assert set(frame[frame.signal == "feature drift"].name) == set(names)
    assert "dataset drift" in set(frame.signal)
    with pytest.raises(ConfigError):
        client.monitor("churn", window=[1])  # type: ignore[arg-type]
    stored = client.monitor("churn", window="1h")
    assert stored.window["rows"] == 1_500
    # The stored run is the newest one, as GET /monitoring/drift shows it.
    latest = client.latest_monitoring_run("churn")
    assert isinstance(latest, MonitoringResult) and latest.run_id == stored.run_id
    assert "<html" in latest.to_html(client.monitoring_history("churn")).lower()


def test_a_model_is_a_plain_object_not_an_orm_row(client: Client, churn_version) -> None:
    register(client, churn_version, "churn")
    model = client.load("churn")
    assert isinstance(model, Model)
    assert type(model.model_version).__module__ == "pgmlops.domain.registry.records"
    assert model.aliases == ("production",)


def test_batch_scoring_labels_and_clean_up_are_client_methods(
    client: Client, churn_version, tmp_path: Path
) -> None:
    version = register(client, churn_version, "churn")
    rows = make_churn(60, seed=4)
    data = tmp_path / "score.csv"
    rows.drop(columns=["Exited"]).to_csv(data, index=False)
    out = tmp_path / "answers.csv"

    summary = client.predict_batch(str(data), str(out))
    assert (summary.model_name, summary.version) == ("churn", version)
    assert summary.rows == summary.written == summary.logged == 60
    answers = pd.read_csv(out)
    assert len(answers) == 60 and answers["prediction_id"].is_unique

    labels = tmp_path / "labels.csv"
    answers.assign(label=rows["Exited"].to_numpy())[["prediction_id", "label"]].to_csv(
        labels, index=False
    )
    stored = client.feedback(labels)
    assert (stored["stored"], stored["replaced"]) == (60, 0)
    assert client.feedback(labels)["replaced"] == 60

    kept = client.collect_garbage(predictions_older_than="90d", dry_run=True)
    assert kept["dry_run"] is True
    with pytest.raises(ConfigError, match="predictions_older_than 'soon' is not an age"):
        client.collect_garbage(predictions_older_than="soon")
