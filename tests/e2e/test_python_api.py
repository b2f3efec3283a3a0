"""The Python API as a notebook uses it: a fresh process, answers equal to a real server's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pgmlops.domain.demo_data import make_churn
from tests.e2e.serverproc import server_env, start_server, stop_server

pytestmark = pytest.mark.e2e

# Runs in its own interpreter: nothing imported or cached by the test process helps it.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    import pgmlops
    from pgmlops.domain.demo_data import make_churn

    rows_file, out_file = sys.argv[1], sys.argv[2]
    frame = make_churn(1_500, seed=2)
    before = frame.copy()
    version = pgmlops.train(frame, target="Exited", model_name="churn", cv_folds=0)
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is left as it was
    pgmlops.promote("churn")
    rows = pd.read_json(rows_file, orient="records")
    answers = {}
    for ref in ("churn@production", f"churn/{version.version}", "churn"):
        model = pgmlops.load(ref)
        x = rows[model.schema.names]
        answers[ref] = {
            "version": model.version,
            "engine": model.engine,
            "predictions": model.predict(x).tolist(),
            "probabilities": model.predict_proba(x)[model.card.classes[1]].tolist(),
            "one": model.predict_records(x.iloc[0].to_dict())[0],
        }
    listing = [(m.name, m.production_version, m.versions) for m in pgmlops.models()]
    json.dump(
        {
            "source": version.card.data.source,
            "names": model.schema.names,
            "answers": answers,
            "models": listing,
            "versions": [v.version for v in pgmlops.versions("churn")],
        },
        open(out_file, "w"),
    )
    """
)


def test_the_api_from_a_fresh_process_answers_as_the_server_does(settings, tmp_path: Path) -> None:
    rows = make_churn(60, seed=41)
    rows_file, out_file = tmp_path / "rows.json", tmp_path / "answers.json"
    rows.to_json(rows_file, orient="records")
    env = server_env(settings)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(rows_file), str(out_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(out_file.read_text())
    assert got["source"] == "(in-memory DataFrame)"
    assert got["models"] == [["churn", 1, 1]] and got["versions"] == [1]
    answers = list(got["answers"].values())
    assert all(a == {**answers[0], "one": a["one"]} for a in answers)

    server = start_server(settings, tmp_path)
    try:
        with server.client() as http:
            records = json.loads(rows[got["names"]].to_json(orient="records"))
            batch = http.post("/predict", json=records)
            single = http.post("/predict", json=records[0])
    finally:
        stop_server(server)
    assert batch.status_code == 200, batch.text
    served = batch.json()["predictions"]
    ours = answers[0]
    assert ours["engine"] == "onnx" and batch.json()["version"] == ours["version"]
    assert [p["prediction"] for p in served] == ours["predictions"]
    assert [p["probability"] for p in served] == pytest.approx(ours["probabilities"], abs=1e-9)
    one = single.json()
    for key in ("prediction", "probability", "confidence", "risk_level", "version"):
        assert one[key] == pytest.approx(ours["one"][key], abs=1e-9), key
