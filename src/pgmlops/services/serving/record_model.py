"""The pydantic model a served record is validated by: the feature schema as typed fields."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
)

from pgmlops.config import ServingConfig
from pgmlops.domain.schema import FLOAT32_MAX, FeatureSchema
from pgmlops.domain.serving.served_fields import special_field


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


# Fields a record may carry that the model does not read. Python names of our own, the
# column's name as the alias: a column called `_id` or `model_config` cannot clash with pydantic.
ENTITY_KEY_FIELD = "pgmlops_entity_key"
_IGNORED_FIELD = "pgmlops_ignored_{}"
# Keys are indexed: a bound (the log's column size) keeps each far below PostgreSQL's btree
# entry limit, and a NUL would make PostgreSQL refuse the row.
MAX_KEY_LENGTH = 200
EntityKey = (
    Annotated[int, Field(gt=-(10 ** (MAX_KEY_LENGTH - 1)), lt=10 ** (MAX_KEY_LENGTH - 1))]
    | Annotated[str, StringConstraints(max_length=MAX_KEY_LENGTH), AfterValidator(_no_nul)]
)


def ignored_fields(
    schema: FeatureSchema, key: str | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Optional fields, documented as ignored, for left-out columns and the key; and their names."""
    fields: dict[str, Any] = {}
    if key is not None and key not in schema.names:
        why = schema.dropped.get(key)
        left_out = f" Training left it out ({why})." if why else ""
        fields[ENTITY_KEY_FIELD] = (
            EntityKey | None,
            Field(
                None,
                alias=key,
                title=key,
                description="Ignored by the model; kept in the prediction log as this "
                f"prediction's key, for feedback by key.{left_out}",
            ),
        )
    for k, (name, why) in enumerate(schema.dropped.items()):
        if name == key:
            continue
        fields[_IGNORED_FIELD.format(k)] = (
            Any,
            Field(
                None, alias=name, title=name, description=f"Ignored: training left it out ({why})."
            ),
        )
    return fields, tuple(fields)


def record_model(schema: FeatureSchema, serving: ServingConfig) -> type[BaseModel]:
    """A pydantic model whose fields ARE the feature schema (typed, enums for categories).

    Columns training left out are accepted and ignored; other unknown fields follow
    `serving.extra_fields`.
    """
    fields: dict[str, Any] = {}
    for spec in schema.features:
        special = special_field(spec, reject_unknown=serving.unknown_categories == "reject")
        if special is not None:
            fields[spec.name] = special
        elif spec.kind == "numeric":
            hint = f"training range {spec.min:g} .. {spec.max:g}" if spec.min is not None else None
            fields[spec.name] = (
                float | None,
                Field(
                    ...,
                    description=hint,
                    allow_inf_nan=False,
                    # Served models may compute in float32 (ONNX): a larger number would
                    # become infinity there, and be logged as a value no model can read.
                    ge=-FLOAT32_MAX,
                    le=FLOAT32_MAX,
                    examples=[spec.mean],
                ),
            )
        else:
            cats = [c for c in spec.categories or [] if c != "__missing__"]
            if serving.unknown_categories == "reject" and cats:
                kind: Any = Literal[tuple(cats)]  # type: ignore[valid-type]
            else:
                # Any string is accepted (and flagged), but not one PostgreSQL cannot store:
                # a NUL would fail the prediction log's whole batch, again on every replay.
                kind = Annotated[str, AfterValidator(_no_nul)]
            fields[spec.name] = (kind | None, Field(..., examples=cats[:1] or None))
    ignored, _ = ignored_fields(schema, schema.key_column(serving.key_column))
    fields.update(ignored)
    extra = "forbid" if serving.extra_fields == "reject" else "ignore"
    return create_model(  # type: ignore[call-overload]
        "Record",
        __config__=ConfigDict(extra=extra, title="Record"),
        **fields,
    )
