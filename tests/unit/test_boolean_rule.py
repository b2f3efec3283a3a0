"""A boolean is not a number: one rule for /predict, Model.predict and batch scoring."""

from __future__ import annotations

import numpy as np

from pgmlops.domain.serving.served_fields import BOOLEAN_NOT_NUMBER, boolean_for_number, is_boolean


def test_python_and_numpy_booleans_are_booleans_and_their_numbers_are_not() -> None:
    assert is_boolean(True) and is_boolean(False) and is_boolean(np.bool_(True))
    assert not any(is_boolean(v) for v in (1, 0, 1.0, "true", None, np.int64(1)))


def test_the_first_record_giving_a_boolean_for_a_numeric_feature_is_named() -> None:
    rows = [{"Age": 41, "Active": True}, "not a record", {"Age": 40}, {"Age": False}]
    assert boolean_for_number(["Age"], rows) == (3, "Age")
    assert boolean_for_number(["Age"], rows[:3]) is None
    assert boolean_for_number([], rows) is None
    assert BOOLEAN_NOT_NUMBER == "Input should be a number, not a boolean"
