"""Every answer names the fields outside what training saw; serving.out_of_range: reject refuses."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pgmlops import Client
from pgmlops.errors import OutOfRangeWarning, ValidationError
from pgmlops.services.batch.scoring import score_chunk
from pgmlops.services.commands import train_command
from pgmlops.services.promotion import promote
from pgmlops.services.serving.load import LoadedModel, load_version
from pgmlops.services.serving.prediction import predict_records


@pytest.fixture
def model(ctx, churn_csv: Path) -> LoadedModel:
    out = train_command(
        ctx,
        data=str(churn_csv),
        target="Exited",
        model_name="churn",
        overrides={"params": {"max_iter": 30}},
        actor="test",
    )
    promote(ctx, "churn", out["version"], actor="test", force=True, reason="test set-up")
    return load_version(ctx, ctx.registry.get_version("churn", out["version"]))


def rows(model: LoadedModel) -> list[dict]:
    spec = model.card.feature_schema.feature("Age")
    base = {
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
    assert spec.max is not None and spec.max < 480
    return [base, {**base, "Age": 480.0}, {**base, "Age": spec.max, "Tenure": -50.0}]


def test_answers_name_the_fields_outside_the_training_range(model, settings) -> None:
    records = rows(model)
    many, logged = predict_records(
        model, [dict(r) for r in records], settings.serving, request_id=None, started=0.0
    )
    assert [i["out_of_range"] for i in many] == [[], ["Age"], ["Tenure"]]
    assert logged[1].output == {"out_of_range": ["Age"]} and logged[0].output is None
    for record, item in zip(records, many, strict=True):
        (one,), _ = predict_records(
            model, [dict(record)], settings.serving, request_id=None, started=0.0
        )
        assert one["out_of_range"] == item["out_of_range"]
    table = score_chunk(
        model, pd.DataFrame(records), settings.serving, id_column=None, request_id="b", log=True
    ).table.to_pandas()
    assert table["out_of_range"].tolist() == ["", "Age", "Tenure"]


def test_reject_refuses_naming_the_field_its_value_and_the_training_range(model, settings) -> None:
    serving = settings.serving.model_copy(update={"out_of_range": "reject"})
    records = rows(model)
    with pytest.raises(ValidationError, match=r"Age = 480 \(training saw \d+ \.\. \d+\)"):
        predict_records(model, [dict(records[1])], serving, request_id=None, started=0.0)
    with pytest.raises(ValidationError, match=r"^row 1: .*Age = 480.*\+1 more rows: 2"):
        predict_records(model, [dict(r) for r in records], serving, request_id=None, started=0.0)
    items, _ = predict_records(model, [dict(records[0])], serving, request_id=None, started=0.0)
    assert items[0]["out_of_range"] == []
    result = score_chunk(
        model, pd.DataFrame(records), serving, id_column=None, request_id="b", log=False
    )
    assert sorted(result.rejected) == [1, 2]
    assert "Age = 480" in result.rejected[1] and "Tenure = -50" in result.rejected[2]
    assert result.table.num_rows == 1


def test_the_python_api_warns_with_its_own_class(model, settings) -> None:
    records = rows(model)
    with Client(settings=settings) as client:
        loaded = client.load("churn@production")
        with pytest.warns(OutOfRangeWarning, match=r"2 of 3 rows .*row 1: Age"):
            answers = loaded.predict_records(records)
        assert [a["out_of_range"] for a in answers] == [[], ["Age"], ["Tenure"]]
    strict = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"out_of_range": "reject"})}
    )
    with Client(settings=strict) as client, pytest.raises(ValidationError, match="Age = 480"):
        client.load("churn@production").predict(records[1])
