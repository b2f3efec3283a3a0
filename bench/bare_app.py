"""The ceiling for /predict: a bare FastAPI app, pydantic validation + onnxruntime, nothing else.

Issue 3 quotes such an app (about 6,300 req/s under `wrk -t1 -c16` on this machine) as the
ceiling pgmlops should approach. This one serves the production version of PGMLOPS_MODEL_NAME
from PGMLOPS_DATABASE_URL / PGMLOPS_ARTIFACT_ROOT with the same pydantic record model and ONNX
session as pgmlops, but no middleware, metrics, request ids, prediction log or reload:

    uvicorn bare_app:app --app-dir bench --workers 2 --no-access-log --port 8001

bench/serve_bench.py runs it next to the real server so that the two are measured alike.
"""

from __future__ import annotations

import numpy as np
import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from pgmlops.config import load_settings
from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.services.context import Context
from pgmlops.services.inference import onnx_row_feeds
from pgmlops.services.serving.load import load_version


def _load():
    settings = load_settings()
    ctx = Context(settings)
    name = settings.model_name
    version = ctx.registry.get_version(name, ctx.registry.alias_version(name, PRODUCTION))
    loaded = load_version(ctx, version)
    ctx.close()
    if loaded.engine.name != "onnx":
        raise RuntimeError("the bare app needs a version with an ONNX copy")
    return loaded


MODEL = _load()
SESSION = MODEL.engine.session  # type: ignore[attr-defined]
SCHEMA = MODEL.card.feature_schema
CLASSES = MODEL.card.classes or []
THRESHOLD = 0.5 if MODEL.card.threshold is None else MODEL.card.threshold
OUTPUT = "probabilities"
ORDER = MODEL.engine._order  # type: ignore[attr-defined]

app = FastAPI()


@app.get("/ready")
async def ready() -> Response:
    return Response(b'{"ready":true}', media_type="application/json")


@app.post("/predict")
async def predict(request: Request) -> Response:
    payload = orjson.loads(await request.body())
    row = MODEL.single.validate_python(payload).__dict__
    (proba,) = SESSION.run([OUTPUT], onnx_row_feeds(SCHEMA, row))
    proba = np.asarray(proba, dtype=float)
    if ORDER is not None:
        proba = proba[:, ORDER]
    p = float(proba[0, 1])
    body = {
        "model": MODEL.name,
        "version": MODEL.version,
        "prediction": CLASSES[1] if p >= THRESHOLD else CLASSES[0],
        "probability": p,
    }
    return Response(orjson.dumps(body), media_type="application/json")
