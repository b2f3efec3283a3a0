"""Live deployments (issue 25): the challenger alias, shadow and canary, on both databases."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pgmlops import Client
from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.errors import ConfigError, NotFoundError
from pgmlops.store.tables import PredictionRow
from tests.integration.test_python_api import churn_version, register  # noqa: F401

ACTOR = "test"


@pytest.fixture
def client(settings: Settings):
    with Client(settings=settings) as c:
        yield c


def _second_version(client: Client, trained) -> int:
    """Register the same artifacts again as v2, a candidate (production stays v1)."""
    card, blobs = trained
    ctx = client.context
    files = {key: ctx.artifacts.put(data) for key, data in blobs.items()}
    sign = lambda number, fs: ctx.artifacts.sign_files("churn", number, fs)  # noqa: E731
    return ctx.registry.create_version("churn", files, card, ACTOR, sign=sign).version


def test_deploy_moves_the_challenger_with_an_audited_history(client, churn_version) -> None:  # noqa: F811
    register(client, churn_version, "churn")
    v2 = _second_version(client, churn_version)
    with pytest.raises(ConfigError, match="production already"):
        client.deploy("churn", 1, shadow=True)
    with pytest.raises(ConfigError, match="exactly one"):
        client.deploy("churn", v2, shadow=True, canary="10%")
    with pytest.raises(ConfigError, match="share"):
        client.deploy("churn", v2, canary="0%")
    with pytest.raises(ConfigError, match="sticky key"):
        client.deploy("churn", v2, canary="10%", sticky_key="no_such_field")
    with pytest.raises(NotFoundError, match="nothing to stop"):
        client.deploy("churn", stop=True)
    client.deploy("churn", v2, shadow=True, reason="try it")
    assert client.challenger("churn")["describe"] == "shadow"
    event = client.deploy("churn", canary="25%", sticky_key="Geography")
    assert (event.previous_version, event.new_version) == (v2, v2)
    assert client.challenger("churn") == {
        "version": v2,
        "mode": "canary",
        "share": 0.25,
        "sticky_key": "Geography",
        "describe": "canary 25% sticky by Geography",
    }
    client.deploy("churn", v2, alias="staging")
    client.deploy("churn", stop=True)
    assert client.challenger("churn") is None
    moves = [(e.alias, e.action, e.new_version) for e in client.history("churn", alias=None)]
    assert moves[-4:] == [
        ("challenger", "shadow", v2),
        ("challenger", "canary", v2),
        ("staging", "set", v2),
        ("challenger", "stop", None),
    ]
    assert client.history("churn")[-1].alias == "production"
    assert client.load("churn@staging").version == v2
    assert client.aliases("churn")["staging"].version == v2


def test_refusals_to_a_python_caller_name_no_command_line_flags(client, churn_version) -> None:  # noqa: F811
    register(client, churn_version, "churn")
    v2 = _second_version(client, churn_version)
    refusals = [
        lambda: client.deploy("churn", v2, shadow=True, stop=True),
        lambda: client.deploy("churn", v2, shadow=True, sticky_key="Geography"),
        lambda: client.deploy("churn", v2, stop=True),
        lambda: client.deploy("churn", v2, canary="ten"),
        lambda: client.deploy("churn", v2, alias="production"),
        lambda: client.promote("churn", v2, force=True),
    ]
    for refuse in refusals:
        with pytest.raises(ConfigError) as refused:
            refuse()
        assert "--" not in str(refused.value), str(refused.value)
    with pytest.raises(ConfigError, match="forced promotion needs a reason"):
        client.promote("churn", v2, force=True, reason="  ")


def _logged(client: Client, n: int) -> list[tuple]:
    deadline = time.monotonic() + 10
    while True:
        with client.context.db.session() as s:
            rows = list(s.scalars(select(PredictionRow)))
            if len(rows) >= n or time.monotonic() > deadline:
                return [(r.id, r.version, r.role, r.paired_id) for r in rows]
        time.sleep(0.1)


def test_shadow_logs_pairs_and_canary_answers_with_its_role(
    client,
    settings: Settings,
    churn_version,  # noqa: F811
) -> None:
    from pgmlops.api.app import create_app

    register(client, churn_version, "churn")
    v2 = _second_version(client, churn_version)
    records = make_churn(20, seed=3).drop(columns=["Exited"]).to_dict("records")
    client.deploy("churn", v2, shadow=True)
    with TestClient(create_app(settings)) as http:
        for rec in records[:5]:
            answer = http.post("/predict", json=rec).json()
            assert (answer["version"], answer["role"]) == (1, "production")
        logged = _logged(client, 10)
        production = {i for i, v, role, _ in logged if role is None}
        shadow = [(v, p) for _, v, role, p in logged if role == "shadow"]
        assert len(production) == 5 and len(shadow) == 5
        assert {p for _, p in shadow} == production and {v for v, _ in shadow} == {v2}
        # Every worker follows the move; this one is told at once by the admin route's refresh.
        client.deploy("churn", canary="100%")
        http.app.state.holder.refresh()
        batch = http.post("/predict", json=records[:4]).json()["predictions"]
        assert {(p["version"], p["role"]) for p in batch} == {(v2, "canary")}
        client.deploy("churn", canary="50%")
        http.app.state.holder.refresh()
        many = http.post("/predict", json=records * 20).json()["predictions"]
        canary = sum(p["role"] == "canary" for p in many)
        # 400 rows at p = 0.5: a binomial within 5 standard deviations.
        assert abs(canary - 200) < 5 * 10
        client.deploy("churn", stop=True)
        http.app.state.holder.refresh()
        assert http.post("/predict", json=records[0]).json()["role"] == "production"
        body = http.get("/metrics").text
        assert 'role="canary"' in body and 'role="shadow"' in body


def test_a_challenger_that_cannot_load_never_changes_an_answer(
    client,
    settings: Settings,
    churn_version,  # noqa: F811
) -> None:
    from pgmlops.api.app import create_app

    register(client, churn_version, "churn")
    card, blobs = churn_version
    ctx = client.context
    files = {key: ctx.artifacts.put(data) for key, data in blobs.items()}
    # A card naming one feature more than its ONNX graph takes: deploy would refuse it, so the
    # alias is written directly, as someone with database access could.
    schema = card.feature_schema
    extra = schema.features[0].model_copy(update={"name": "Extra"})
    broken = card.model_copy(
        update={"feature_schema": schema.model_copy(update={"features": [*schema.features, extra]})}
    )
    sign = lambda number, fs: ctx.artifacts.sign_files("churn", number, fs)  # noqa: E731
    v2 = ctx.registry.create_version("churn", files, broken, ACTOR, sign=sign).version
    ctx.registry.move_alias(
        "churn",
        "challenger",
        new_version=v2,
        expected_version=None,
        action="canary",
        actor=ACTOR,
        reason="broken on purpose",
        deployment={"mode": "canary", "share": 1.0, "sticky_key": None},
    )
    record = make_churn(3, seed=5).drop(columns=["Exited"]).to_dict("records")[0]
    with TestClient(create_app(settings)) as http:
        answer = http.post("/predict", json=record)
        assert answer.status_code == 200
        assert (answer.json()["version"], answer.json()["role"]) == (1, "production")
        health = http.get("/health", headers={}).json()
        assert health["model"]["challenger"] is None
        assert "challenger v2 not loaded" in health["model"]["challenger_error"]
        assert 'result="challenger_failed"' in http.get("/metrics").text
