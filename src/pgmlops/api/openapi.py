"""The OpenAPI document: /predict and each /models/{name}/predict typed by its model's schema.

Those routes are plain Starlette ones (for speed), so their entries are written here from the
served versions' record models, and rebuilt when a version is reloaded.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from pgmlops.services.serving.load import ModelHolder

_PROBLEM = {"content": {"application/json": {"schema": {"type": "object"}}}}
_LABEL = {"anyOf": [{"type": "string"}, {"type": "number"}]}
_FEEDBACK_ITEM = {
    "anyOf": [
        {
            "type": "object",
            "title": "LabelById",
            "additionalProperties": False,
            "required": ["prediction_id", "label"],
            "properties": {"prediction_id": {"type": "string", "format": "uuid"}, "label": _LABEL},
        },
        {
            "type": "object",
            "title": "LabelByKey",
            "description": "The label goes to the latest prediction of the model logged with "
            "this key; keys no prediction carries are listed in unmatched_keys.",
            "additionalProperties": False,
            "required": ["key", "label"],
            "properties": {
                "key": {"anyOf": [{"type": "string", "maxLength": 200}, {"type": "integer"}]},
                "label": _LABEL,
            },
        },
    ]
}


def _one_or_many(item: dict[str, Any], max_batch: int) -> dict[str, Any]:
    return {"anyOf": [item, {"type": "array", "items": item, "minItems": 1, "maxItems": max_batch}]}


def _record_body(
    holder: ModelHolder, component: str, components: dict[str, Any], max_batch: int
) -> dict[str, Any]:
    """The body schema of a predict route: the served version's record, or any object."""
    model = holder.current
    if model is None:
        anything = {"type": "object"}
        return {"anyOf": [anything, {"type": "array", "items": anything}]}
    record = model.record.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(record.pop("$defs", {}))
    record["title"] = component
    components[component] = record
    return _one_or_many({"$ref": f"#/components/schemas/{component}"}, max_batch)


def _predict_op(body: dict[str, Any], summary: str, operation_id: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": operation_id,
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": {"description": "A prediction per record", **_PROBLEM},
            "401": {"description": "Missing or wrong predict key", **_PROBLEM},
            "413": {
                "description": "Body over the size limit, or over max_batch records",
                **_PROBLEM,
            },
            "415": {"description": "Content-Type is not application/json", **_PROBLEM},
            "422": {"description": "A record does not fit the feature schema", **_PROBLEM},
            "503": {"description": "No production model is loaded", **_PROBLEM},
        },
    }


def _feedback_body(max_batch: int) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": _one_or_many(_FEEDBACK_ITEM, max_batch)}},
    }


def _feedback_op(name: str, max_batch: int) -> dict[str, Any]:
    return {
        "summary": f"Record true labels for earlier predictions of model {name!r}",
        "operationId": f"feedback_{name}",
        "requestBody": _feedback_body(max_batch),
        "responses": {
            "200": {"description": "How many labels were stored and replaced", **_PROBLEM},
            "404": {"description": "An unknown prediction_id", **_PROBLEM},
            "413": {"description": "Body over the size limit, or over max_batch items", **_PROBLEM},
            "422": {
                "description": "A label that does not fit, or a prediction of another model",
                **_PROBLEM,
            },
        },
    }


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """OpenAPI whose predict bodies are the served versions' feature schemas."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, routes=app.routes, description=app.description
    )
    holders: dict[str, ModelHolder] = app.state.holders
    max_batch = app.state.ctx.settings.serving.max_batch
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    body = _record_body(app.state.holder, "Record", components, max_batch)
    paths: dict[str, Any] = {
        "/predict": {
            "post": _predict_op(
                body,
                "Predict one record or a list of records with the production model",
                "predict_predict_post",
            )
        }
    }
    if len(holders) > 1:
        for name, holder in holders.items():
            body = _record_body(holder, f"Record_{name}", components, max_batch)
            paths[f"/models/{name}/predict"] = {
                "post": _predict_op(
                    body,
                    f"Predict with the production version of model {name!r}",
                    f"predict_{name}",
                )
            }
            paths[f"/models/{name}/feedback"] = {"post": _feedback_op(name, max_batch)}
    # The routes are plain Starlette ones; put them first, where users look for them.
    schema["paths"] = {**paths, **schema["paths"]}
    fb = schema["paths"]["/feedback"]["post"]
    fb["requestBody"] = _feedback_body(max_batch)
    fb.setdefault("responses", {})["413"] = {
        "description": "Body over the size limit, or over max_batch items",
        **_PROBLEM,
    }
    app.openapi_schema = schema
    return schema
