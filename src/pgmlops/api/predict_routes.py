"""POST /predict and POST /feedback: read the body (api/request_body.py), call the services."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from pgmlops.api.deps import check_key, get_ctx
from pgmlops.api.errors import HTTPProblem, error_status
from pgmlops.api.observability import request_id_var
from pgmlops.api.request_body import read_body, read_json, validate_body
from pgmlops.config import ServingConfig
from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.services.live.traffic import Answer, ShadowJob, answer_canary, mark
from pgmlops.services.rollback.request_counts import outcome_of
from pgmlops.services.serving.feedback import labels_from_json, record_labels
from pgmlops.services.serving.load import LiveModel, LoadedModel
from pgmlops.services.serving.prediction import predict_records
from pgmlops.services.serving.prediction_log.contract import AcknowledgedLog, PredictionLog

router = APIRouter()
# Batches above this size are predicted off the event loop so small requests keep flowing.
_THREADPOOL_ROWS = 256
# Acknowledged durability: how long a request waits for its row before a 503.
_ACK_TIMEOUT_S = 30.0
# log_when_full=wait: how often a waiting request looks for room in the log's queue.
_ROOM_POLL_S = 0.01


def _settle(future: asyncio.Future[str | None], error: str | None) -> None:
    if not future.done():
        future.set_result(error)


async def _wait_for_room(
    writer: PredictionLog, take: Callable[[], bool], n: int, serving: ServingConfig
) -> None:
    """Call take() until it accepts the rows or log_wait_seconds pass; then 503, counted.

    Back-pressure (serving.log_when_full=wait): the answer is only returned once the log
    holds its rows, so a client never gets a 200 for a prediction the log dropped.
    """
    if take():
        return
    deadline = time.monotonic() + serving.log_wait_seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(_ROOM_POLL_S)
        if take():
            return
    writer.refuse(n)
    retry = max(1, round(serving.log_wait_seconds))
    raise HTTPProblem(
        503,
        f"prediction log full ({writer.depth} of {writer.max_queue} rows waiting; the "
        f"database is slower than scoring or refusing rows): {n} rows not answered, retry",
        headers={"Retry-After": str(retry)},
    )


async def log_rows(
    writer: PredictionLog, records: list[PredictionRecord], serving: ServingConfig
) -> None:
    """Hand the request's rows to the prediction log as serving.log_when_full says."""
    if writer.acknowledged:
        # Only a writer that acknowledges sets `acknowledged` (the thread writer).
        await _logged(cast(AcknowledgedLog, writer), records, serving)
    elif serving.log_when_full == "drop":
        writer.submit(records)  # beyond the bound: dropped and counted lost, still answered
    else:
        await _wait_for_room(writer, lambda: writer.offer(records), len(records), serving)


async def _logged(
    writer: AcknowledgedLog, records: list[PredictionRecord], serving: ServingConfig
) -> None:
    """Wait until the writer has committed or spilled the records (acknowledged durability)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str | None] = loop.create_future()

    def done(error: str | None) -> None:
        loop.call_soon_threadsafe(_settle, future, error)

    if serving.log_when_full == "drop":
        if not writer.submit_acknowledged(records, done):
            writer.refuse(len(records))
            raise HTTPProblem(503, "prediction log queue is full; prediction not answered")
    else:
        take = lambda: writer.submit_acknowledged(records, done)  # noqa: E731
        await _wait_for_room(writer, take, len(records), serving)
    try:
        error = await asyncio.wait_for(future, _ACK_TIMEOUT_S)
    except TimeoutError:
        error = f"not logged within {_ACK_TIMEOUT_S:.0f} s"
    if error:
        raise HTTPProblem(503, f"prediction log unavailable ({error}); prediction not answered")


def count_predictions(metrics: Any, model: LoadedModel, items: list[dict[str, Any]]) -> None:
    """Predictions by class (by count for regression)."""
    if model.task == "regression":
        counts: dict[str, int] = {"value": len(items)}
    elif len(items) == 1:
        counts = {str(items[0]["prediction"]): 1}
    else:
        counts = Counter(str(item["prediction"]) for item in items)
    for label, n in counts.items():
        metrics.count_prediction(model.name, model.version, label, n)


def _revalidator(body: bytes, max_batch: int) -> Any:
    """The request body validated by another version's record model (a challenger's)."""

    def revalidate(other: LoadedModel) -> list[dict[str, Any]]:
        return validate_body(other, body, max_batch)[0]

    return revalidate


async def _answer_canary(
    state: Any,
    model: LoadedModel,
    live: LiveModel,
    rows: list[dict],
    body: bytes,
    rid: str | None,
    started: float,
) -> Answer:
    serving = state.ctx.settings.serving

    def run() -> Answer:
        return answer_canary(
            model,
            live,
            rows,
            serving,
            request_id=rid,
            started=started,
            revalidate=_revalidator(body, serving.max_batch),
            count=state.metrics.count_live,
        )

    if len(rows) > _THREADPOOL_ROWS:
        return await run_in_threadpool(run)
    return run()


def _shadow_job(
    live: LiveModel, rows: list[dict], body: bytes, records: list, rid: str | None, max_batch: int
) -> ShadowJob:
    if live.same_features:
        return ShadowJob(live, rows, None, records, rid)
    return ShadowJob(live, None, _revalidator(body, max_batch), records, rid)


def predict_endpoint(model_name: str | None = None) -> Any:
    """The /predict handler for the default model (None) or for one served model by name."""

    async def predict(request: Request) -> Response:
        """Predict one record or a list of records with the production model."""
        started = time.perf_counter()
        state = request.app.state
        serving = state.ctx.settings.serving
        if state.predict_key:
            check_key(request, state.predict_key, "/predict", "PGMLOPS_PREDICT_API_KEY")
        body = await read_body(request, serving.max_body_bytes)
        holder = state.holder if model_name is None else state.holders[model_name]
        model = holder.current
        if model is None:
            raise HTTPProblem(503, holder.last_error or "no production model is loaded")
        # The id the response carries (the client's X-Request-Id, cut to 64 characters, or ours).
        rid = request_id_var.get()
        live = holder.live
        try:
            rows, many = validate_body(model, body, serving.max_batch)
            if live is not None and live.deployment.mode == "canary":
                answer = await _answer_canary(state, model, live, rows, body, rid, started)
                items, records = answer.items, answer.records
            else:
                if len(rows) > _THREADPOOL_ROWS:
                    items, records = await run_in_threadpool(
                        predict_records, model, rows, serving, request_id=rid, started=started
                    )
                else:
                    items, records = predict_records(
                        model, rows, serving, request_id=rid, started=started
                    )
                mark(items, records, None)
                answer = Answer(items, records, [(model, items)])
        except Exception as exc:
            # The version refused (its schema) or failed: its error rate counts it.
            state.counts.count(model.name, model.version, outcome_of(error_status(exc)))
            raise
        state.counts.count(model.name, model.version, "answered")
        if serving.log_predictions:
            await log_rows(state.writer, records, serving)
        if live is not None and live.deployment.mode == "shadow":
            # After production's row is queued (or acknowledged): the answer never waits.
            state.shadow.offer(_shadow_job(live, rows, body, records, rid, serving.max_batch))
        for who, answered in answer.answered_by:
            if answered:
                count_predictions(state.metrics, who, answered)
                if live is not None:
                    role = "production" if who is model else "canary"
                    state.metrics.count_live(who.name, who.version, role, "answered", len(answered))
        answer = (
            {"model": model.name, "version": model.version, "predictions": items}
            if many
            else items[0]
        )
        return Response(orjson.dumps(answer), media_type="application/json")

    return predict


# A plain Starlette route: FastAPI's per-request dependency solving would only hand over the
# Request, and /predict is the path whose microseconds count. Its OpenAPI entry is written in
# api/openapi.py from the served version's feature schema.
router.add_route("/predict", predict_endpoint(), methods=["POST"], include_in_schema=False)


async def _feedback(request: Request, model_name: str | None) -> Response:
    state = request.app.state
    serving = state.ctx.settings.serving
    payload = await read_json(request, serving.max_body_bytes)
    items = payload if isinstance(payload, list) else [payload]
    if len(items) > serving.max_batch:
        raise HTTPProblem(
            413, f"{len(items)} items exceed the maximum batch of {serving.max_batch}"
        )
    labels = labels_from_json(items)
    result = await run_in_threadpool(
        record_labels,
        get_ctx(request),
        labels,
        # Keys are looked up among this model's predictions; on /models/{name}/feedback ids
        # must be that model's too.
        model_name=model_name or state.holder.model_name,
        only_model=model_name is not None,
        flush=lambda: state.writer.flush(5.0),
    )
    return Response(orjson.dumps(result), media_type="application/json")


def feedback_endpoint(model_name: str) -> Any:
    """POST /models/{name}/feedback: labels for predictions of that model only."""

    async def feedback(request: Request) -> Response:
        return await _feedback(request, model_name)

    return feedback


async def unknown_model(request: Request) -> Response:
    """/models/{name}/predict|feedback for a model this server does not serve: 404."""
    name = request.path_params["name"][:128]
    served = ", ".join(request.app.state.holders)
    raise HTTPProblem(404, f"model {name!r} is not served here (served: {served})")


def add_model_routes(router: APIRouter, names: list[str]) -> None:
    """One predict and one feedback route per served model, then a 404 for any other name.

    Plain routes like /predict; api/openapi.py writes each one's typed body.
    """
    for name in names:
        router.add_route(
            f"/models/{name}/predict",
            predict_endpoint(name),
            methods=["POST"],
            include_in_schema=False,
        )
        router.add_route(
            f"/models/{name}/feedback",
            feedback_endpoint(name),
            methods=["POST"],
            include_in_schema=False,
        )
    for action in ("predict", "feedback"):
        router.add_route(
            f"/models/{{name}}/{action}", unknown_model, methods=["POST"], include_in_schema=False
        )


@router.post("/feedback", summary="Record true labels for earlier predictions")
async def feedback(request: Request) -> Response:
    return await _feedback(request, None)
