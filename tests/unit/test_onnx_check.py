"""Which holdout rows an ONNX copy is compared with the pipeline on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pgmlops.services.training.onnx_export import CHECK_ROWS, check_rows


def test_a_holdout_up_to_the_bound_is_checked_on_every_row() -> None:
    holdout = pd.DataFrame({"x": np.arange(CHECK_ROWS)})
    assert check_rows(holdout) is holdout


def test_a_larger_holdout_is_checked_on_the_same_seeded_sample_at_training_and_promotion() -> None:
    # Training checks the holdout as split; promotion reads it back from Parquet with a fresh
    # index: the same positions must be drawn from both.
    at_training = pd.DataFrame({"x": np.arange(250_000)}, index=np.arange(250_000) * 7 + 3)
    read_back = at_training.reset_index(drop=True)
    first, again = check_rows(at_training), check_rows(read_back)
    assert len(first) == CHECK_ROWS
    assert first["x"].tolist() == again["x"].tolist()
    assert first["x"].nunique() == CHECK_ROWS
