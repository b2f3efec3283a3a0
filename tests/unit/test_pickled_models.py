"""Models users already have keep loading after modules move (issue 23 §2's regroup).

A pickled pipeline names each class by its module path, and joblib imports that path when it
loads the model; a module that a pickled class lived in keeps a re-export at its old path.

data/model_pickled_before_regroup.joblib is the `model` artifact of a version trained with
the tree before the regroup (main at 4e5e2a4): `Client().train("data.csv", target="churn",
estimator="xgboost.XGBClassifier", params={"n_estimators": 5, "max_depth": 2})` on 400 rows
of age (18-79), plan (basic/pro/team) and a signup date, churn = (age > 50) xor (plan ==
"pro"). The expected answers below are what that tree's pipeline gave on ROWS.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pandas as pd
import pytest

from pgmlops.domain.dates import DateFeatures
from pgmlops.domain.training.xgb_labels import LabelledXGBClassifier
from pgmlops.services.inference import load_pipeline

# regroup: old paths on purpose (the regroup script leaves this file alone).
FIXTURE = Path(__file__).parent / "data" / "model_pickled_before_regroup.joblib"
ROWS = pd.DataFrame(
    {
        "age": [25.0, 60.0, 40.0, 70.0],
        "signup": [19723.0, 19800.0, 19900.0, 20000.0],  # days since 1970, as served
        "plan": ["basic", "pro", "team", "basic"],
    }
)


def test_the_fixture_names_the_old_module_paths() -> None:
    pickled = zlib.decompress(FIXTURE.read_bytes())
    assert b"pgmlops.domain.xgb_labels" in pickled
    assert b"pgmlops.domain.dates" in pickled
    assert b"pgmlops.domain.training" not in pickled


def test_a_model_pickled_before_the_regroup_loads_and_answers_as_it_did() -> None:
    pipeline = load_pipeline(FIXTURE.read_bytes())
    assert isinstance(pipeline.steps[0][1], DateFeatures)
    assert type(pipeline.steps[-1][1]) is LabelledXGBClassifier
    assert pipeline.predict(ROWS).tolist() == ["0", "0", "0", "1"]
    positive = pipeline.predict_proba(ROWS)[:, 1].tolist()
    assert positive == pytest.approx([0.128933, 0.137111, 0.128933, 0.896625], abs=1e-6)


def test_no_module_in_the_package_imports_an_old_path() -> None:
    # The shim is for unpickling only; code names the new home, so the shim can go one day.
    root = Path(__file__).resolve().parents[2] / "src" / "pgmlops"
    users = [
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if "pgmlops.domain.xgb_labels" in path.read_text() and path.name != "xgb_labels.py"
    ]
    assert users == []
