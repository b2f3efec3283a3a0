"""The service's own OpenAPI schema, fuzzed by schemathesis against a real server process.

Valid and invalid requests are generated for every operation the schema publishes (the /predict
body IS the served version's feature schema), sent to `pgmlops serve` on SQLite and PostgreSQL,
and no answer may be a 5xx. Admin routes are fuzzed with the key (so /promote and /rollback
really move production when a generated body is valid) and without it or with a wrong one
(refused with 401, and production does not move).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.e2e.serverproc import ADMIN_KEY, Server

pytestmark = pytest.mark.e2e

# Generated requests per operation and generation mode: enough to reach every branch of the
# validation, few enough that one database's run stays well under two minutes.
EXAMPLES = 25
# Without the key every admin request is refused before any work: fewer examples suffice.
EXAMPLES_WITHOUT_KEY = 10
ADMIN = {
    ("POST", "/reload"),
    ("POST", "/promote"),
    ("POST", "/rollback"),
    ("POST", "/retrain"),
    ("GET", "/retrain/status"),
}
WITHOUT_THE_KEY = [{}, {"X-API-Key": "not-" + ADMIN_KEY}, {"Authorization": "Bearer wrong"}]
MUST_BE_FUZZED = ADMIN | {
    ("POST", "/predict"),
    ("POST", "/feedback"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/models"),
}


@dataclass
class Failure:
    operation: str
    mode: str
    detail: str


def _operations(schema: Any) -> dict[tuple[str, str], Any]:
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        found[(operation.method.upper(), operation.path)] = operation
    return found


def _modes(operation: Any) -> tuple[GenerationMode, ...]:
    """Negative (invalid) requests only exist for operations that take some input."""
    inputs = (operation.body, operation.query, operation.path_parameters, operation.headers)
    if any(len(list(part)) for part in inputs):
        return (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    return (GenerationMode.POSITIVE,)


def _is_json(body: bytes | str | None) -> bool:
    try:
        json.loads(body or b"")
    except ValueError:
        return False
    return True


def _refused_without_the_key(response: Any) -> bool:
    """401, or a 400/422 for a body that is not JSON at all.

    FastAPI decodes a route's declared JSON body before it runs the route's dependencies, so an
    undecodable body (bytes that are not JSON, or not UTF-8) is refused as malformed before the
    key is checked. Anything that decodes reaches the key check and must get 401.
    """
    if response.status_code == 401:
        return True
    return response.status_code in (400, 422) and not _is_json(response.request.body)


@pytest.fixture
def api_schema(server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", timeout=30)


def _fuzz(
    server: Server,
    operation: Any,
    mode: GenerationMode,
    headers: dict[str, str],
    *,
    examples: int = EXAMPLES,
    without_key: bool = False,
) -> Failure | None:
    """Send generated requests for one operation; the first failing one (shrunk), if any."""
    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode))
        response = case.call(base_url=server.url, headers=headers, timeout=60)
        case.validate_response(response, checks=[not_a_server_error])
        if without_key:
            assert _refused_without_the_key(response), (
                f"{label} without a valid key answered {response.status_code}, not 401: "
                f"{response.text[:300]}\nrequest: {case.as_curl_command(headers=headers)}"
            )

    try:
        run()
    # The failing request as schemathesis reports it (its failures come as an exception group).
    except (Exception, BaseExceptionGroup) as exc:
        return Failure(label, mode.value, f"{type(exc).__name__}: {exc}"[:3000])
    return None


def _report(failures: list[Failure], server: Server) -> str:
    lines = [f"--- {f.operation} [{f.mode}]\n{f.detail}" for f in failures]
    tail = server.log.read_text(errors="replace")[-4000:]
    return "\n".join(lines) + f"\n--- server log (tail)\n{tail}"


def test_generated_requests_never_get_a_server_error(server: Server, api_schema: Any) -> None:
    operations = _operations(api_schema)
    missing = MUST_BE_FUZZED - set(operations)
    assert not missing, f"the OpenAPI schema does not publish {sorted(missing)}"
    # /predict's body in the published schema is the served model's record, not a free dict.
    predict_body = api_schema.raw_schema["paths"]["/predict"]["post"]["requestBody"]
    assert "#/components/schemas/Record" in str(predict_body)

    # Found by this fuzzing on PostgreSQL (which refuses NUL in text): a NUL in a model name is
    # bad input (4xx), not a database failure (it was a 503). Checked every run, not by chance.
    nul = "churn\x00"
    with server.client(headers=server.admin_headers()) as http:
        answers = {
            path: http.get(path, params={"model_name": nul})
            for path in ("/models", "/monitoring/drift", "/monitoring/report", "/retrain/status")
        } | {
            path: http.post(path, json={"model_name": nul})
            for path in ("/promote", "/rollback", "/retrain")
        }
    server_errors = {
        p: f"{r.status_code} {r.text[:200]}" for p, r in answers.items() if r.is_server_error
    }
    assert not server_errors, server_errors

    # Without the admin key (or with a wrong one) every admin request is refused with 401,
    # whatever its body, and production does not move.
    failures: list[Failure] = []
    for headers in WITHOUT_THE_KEY:
        for key in sorted(ADMIN):
            for mode in _modes(operations[key]):
                failure = _fuzz(
                    server,
                    operations[key],
                    mode,
                    headers,
                    examples=EXAMPLES_WITHOUT_KEY,
                    without_key=True,
                )
                if failure:
                    failures.append(failure)
    assert not failures, _report(failures, server)
    with server.client() as http:
        assert http.get("/models").json()["serving"]["version"] == 1

    # With the key, every operation (admin ones included) answers anything but a 5xx.
    for operation in operations.values():
        for mode in _modes(operation):
            failure = _fuzz(server, operation, mode, server.admin_headers())
            if failure:
                failures.append(failure)
    assert not failures, _report(failures, server)
    with server.client() as http:
        assert http.get("/ready").status_code == 200, "the server stopped serving after fuzzing"
