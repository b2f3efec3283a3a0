"""Columns training left out: recorded with their kind, accepted and ignored when served."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from pgmlops.config import ServingConfig
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.schema import FeatureSchema, key_text
from pgmlops.domain.training.frame import prepare_training_frame
from pgmlops.services.serving.record_model import ENTITY_KEY_FIELD, record_model

RAW = make_churn(500, seed=5).assign(
    Region="EU", Notes=np.nan, customer_ref=lambda f: "C-" + f["CustomerId"].astype(str)
)


@pytest.fixture(scope="module")
def schema() -> FeatureSchema:
    _, _, schema = prepare_training_frame(RAW, "Exited", drop=["Tenure"])
    return schema


def raw_row(**changes: object) -> dict:
    row = RAW.drop(columns=["Exited"]).iloc[0].to_dict()
    row["Notes"] = None
    return {**row, **changes}


def test_training_records_the_kind_of_every_column_it_left_out(schema: FeatureSchema) -> None:
    assert schema.dropped_kinds == {
        "Tenure": "requested",
        "CustomerId": "identifier",
        "Region": "constant",
        "Notes": "empty",
        "customer_ref": "identifier",
    }
    assert schema.identifiers == ["CustomerId", "customer_ref"]


def test_a_card_written_before_the_kinds_gets_them_from_the_reasons(
    schema: FeatureSchema,
) -> None:
    stored = schema.model_dump(mode="json")
    del stored["dropped_kinds"]
    assert FeatureSchema.model_validate(stored).dropped_kinds == schema.dropped_kinds


def test_the_key_is_the_setting_else_the_first_identifier(schema: FeatureSchema) -> None:
    assert schema.key_column() == "CustomerId"
    assert schema.key_column("customer_ref") == "customer_ref"


def test_a_raw_row_with_every_left_out_column_is_accepted_and_they_are_ignored(
    schema: FeatureSchema,
) -> None:
    record = record_model(schema, ServingConfig())
    row = TypeAdapter(record).validate_python(raw_row()).__dict__
    assert row[ENTITY_KEY_FIELD] == int(RAW["CustomerId"].iloc[0])
    assert set(schema.names) <= set(row)
    assert not {"CustomerId", "Region", "Notes", "Tenure", "customer_ref"} & set(row)


def test_a_row_without_the_left_out_columns_is_still_valid(schema: FeatureSchema) -> None:
    record = record_model(schema, ServingConfig())
    bare = {name: raw_row()[name] for name in schema.names}
    assert TypeAdapter(record).validate_python(bare).__dict__[ENTITY_KEY_FIELD] is None


def test_an_unknown_field_still_follows_extra_fields(schema: FeatureSchema) -> None:
    strict = TypeAdapter(record_model(schema, ServingConfig()))
    with pytest.raises(PydanticValidationError, match="Colour"):
        strict.validate_python(raw_row(Colour="red"))
    lenient = TypeAdapter(record_model(schema, ServingConfig(extra_fields="ignore")))
    assert "Colour" not in lenient.validate_python(raw_row(Colour="red")).__dict__


@pytest.mark.parametrize(
    "key", ["x" * 201, "a\x00b", 1.5, 10**200], ids=["too-long", "nul", "fraction", "huge"]
)
def test_a_key_the_log_cannot_store_is_refused(schema: FeatureSchema, key: object) -> None:
    record = TypeAdapter(record_model(schema, ServingConfig()))
    with pytest.raises(PydanticValidationError, match="CustomerId"):
        record.validate_python(raw_row(CustomerId=key))


def test_openapi_shows_left_out_columns_as_optional_and_ignored(schema: FeatureSchema) -> None:
    record = record_model(schema, ServingConfig())
    body = record.model_json_schema()
    for name in ("CustomerId", "Region", "Notes", "Tenure", "customer_ref"):
        assert name in body["properties"] and name not in body["required"]
        assert "Ignored" in body["properties"][name]["description"]
    assert "kept in the prediction log" in body["properties"]["CustomerId"]["description"]
    assert set(body["required"]) == set(schema.names)


def test_keys_are_stored_as_text_the_same_way_on_every_path() -> None:
    assert key_text(25000000) == key_text(25000000.0) == key_text(" 25000000 ") == "25000000"
    assert key_text("C-7") == "C-7"
    assert key_text("  ") is None and key_text(None) is None


def test_a_retrain_on_features_alone_still_knows_the_columns_the_base_left_out(
    schema: FeatureSchema,
) -> None:
    features_only = RAW[[*schema.names, "Exited"]].assign(Flag=1)
    _, _, retrained = prepare_training_frame(features_only, "Exited")
    kept = retrained.keeping_left_out(schema)
    assert list(kept.dropped_kinds) == [*schema.dropped_kinds, "Flag"]
    assert kept.key_column() == "CustomerId" and kept.names == retrained.names
