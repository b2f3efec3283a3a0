"""Batch scoring checks cells column-wise, yet refuses exactly what /predict's record model does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError as PydanticValidationError

from pgmlops.domain.serving.served_fields import BOOLEAN_NOT_NUMBER
from pgmlops.services.batch.scoring import score_chunk, validate_chunk
from pgmlops.services.commands import train_command
from pgmlops.services.serving.load import LoadedModel, load_version
from pgmlops.services.serving.prediction import predict_records

NUMERIC_CELLS = ["12", "1e3", "abc", "inf", "-inf", "nan", 1e39, -1e39, True, 5, 7.5, None, np.nan]
TEXT_CELLS = ["France", "Mars", "", " France", "Fr\x00ance", 3, None]


@pytest.fixture
def model(ctx, churn_csv: Path) -> LoadedModel:
    trained = train_command(
        ctx,
        data=str(churn_csv),
        query=None,
        target="Exited",
        model_name="churn",
        params=[],
        drop=[],
        overrides={"params": {"max_iter": 30}},
        onnx=True,
        actor="test",
    )
    return load_version(ctx, ctx.registry.get_version("churn", trained["version"]))


def base_row() -> dict:
    return {
        "CreditScore": 650.0,
        "Geography": "Spain",
        "Gender": "Female",
        "Age": 41.0,
        "Tenure": 3.0,
        "Balance": 1200.5,
        "NumOfProducts": 2.0,
        "HasCrCard": 1.0,
        "IsActiveMember": 0.0,
        "EstimatedSalary": 50_000.0,
    }


def predict_refuses(model: LoadedModel, row: dict) -> bool:
    # A frame's NaN is its missing value: what JSON carries as null.
    row = {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()}
    if any(isinstance(row[n], bool) for n in model.card.feature_schema.numeric):
        return True  # /predict's own rule: a boolean is not a number
    try:
        model.single.validate_python(row)
    except PydanticValidationError:
        return True
    return False


def test_column_checks_refuse_exactly_the_cells_predict_refuses(model: LoadedModel, ctx) -> None:
    rows = [{**base_row(), "Age": v} for v in NUMERIC_CELLS]
    rows += [{**base_row(), "Geography": v} for v in TEXT_CELLS]
    # One column of mixed Python values, as a SQL driver or a Parquet object column gives.
    chunk = pd.DataFrame(rows, dtype=object)

    _, rejected = validate_chunk(model, chunk, ctx.settings.serving)

    for k, row in enumerate(rows):
        assert (k in rejected) == predict_refuses(model, row), (row, rejected.get(k))


def test_a_boolean_for_a_number_is_refused_with_predicts_message(model: LoadedModel, ctx) -> None:
    chunk = pd.DataFrame([base_row(), {**base_row(), "Age": True}], dtype=object)

    _, rejected = validate_chunk(model, chunk, ctx.settings.serving)

    assert rejected == {1: f"column 'Age': {BOOLEAN_NOT_NUMBER}"}


def test_refused_rows_name_the_column_and_predicts_message(model: LoadedModel, ctx) -> None:
    chunk = pd.DataFrame([base_row(), {**base_row(), "Geography": "Mars"}], dtype=object)

    _, rejected = validate_chunk(model, chunk, ctx.settings.serving)

    assert list(rejected) == [1]
    assert rejected[1].startswith("column 'Geography': Input should be ")
    assert "'France'" in rejected[1]


def test_scores_and_log_records_equal_predict_records_for_the_same_rows(
    model: LoadedModel, ctx
) -> None:
    rows = [{**base_row(), "Age": float(a), "Balance": None if a % 3 else 99.0} for a in range(60)]
    chunk = pd.DataFrame(rows)
    serving = ctx.settings.serving

    batch = score_chunk(model, chunk, serving, id_column=None, request_id="batch-t", log=True)
    items, records = predict_records(model, rows, serving, request_id="r", started=0.0)

    table = batch.table.to_pandas()
    assert table["prediction"].tolist() == [str(i["prediction"]) for i in items]
    assert table["probability"].tolist() == [i["probability"] for i in items]
    assert table["confidence"].tolist() == [i["confidence"] for i in items]
    assert table["risk_level"].tolist() == [i["risk_level"] for i in items]
    for ours, theirs in zip(batch.records, records, strict=True):
        assert ours.features == theirs.features
        assert (ours.prediction, ours.probability, ours.confidence, ours.output) == (
            theirs.prediction,
            theirs.probability,
            theirs.confidence,
            theirs.output,
        )


def test_multiclass_writes_one_probability_column_per_class_as_predict_answers(
    ctx, churn_csv: Path
) -> None:
    trained = train_command(
        ctx,
        data=str(churn_csv),
        query=None,
        target="NumOfProducts",
        model_name="products",
        params=[],
        drop=[],
        overrides={"params": {"max_iter": 20}},
        onnx=True,
        actor="test",
    )
    model = load_version(ctx, ctx.registry.get_version("products", trained["version"]))
    rows = [{**base_row(), "Age": float(a)} for a in range(20, 80)]
    for row in rows:
        del row["NumOfProducts"]
        row["Exited"] = 1.0
    serving = ctx.settings.serving

    batch = score_chunk(
        model, pd.DataFrame(rows), serving, id_column=None, request_id="batch-t", log=True
    )
    items, records = predict_records(model, rows, serving, request_id="r", started=0.0)

    classes = model.card.classes or []
    table = batch.table.to_pandas()
    assert list(table.columns) == [
        "prediction_id",
        "prediction",
        *[f"probability_{c}" for c in classes],
        "confidence",
        "risk_level",
        "out_of_range",
    ]
    assert table["prediction"].tolist() == [str(i["prediction"]) for i in items]
    for c in classes:
        assert table[f"probability_{c}"].tolist() == [i["probability"][c] for i in items]
    assert [r.output for r in batch.records] == [r.output for r in records]
    assert [r.confidence for r in batch.records] == [r.confidence for r in records]
