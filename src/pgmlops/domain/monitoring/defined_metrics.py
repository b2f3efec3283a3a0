"""Which metrics a window's labels leave undefined, so monitoring never alarms on them.

A window with no positive label has no recall (0 of 0 positives found) and no ROC or PR AUC;
one with no negative has no AUC either; a window where the model flagged nothing has no
precision. scikit-learn reports such values as 0 (``zero_division=0``), and "recall 0.911 →
0.000" on a window with no positives reads as a collapse that never happened.
"""

from __future__ import annotations

import numpy as np

from pgmlops.domain.kinds import Task


def undefined_metrics(
    task: Task, y_true: np.ndarray, predicted: np.ndarray, classes: list[str] | None
) -> dict[str, str]:
    """Metric name -> why these labels (and predictions) leave it undefined."""
    if task != "binary" or not classes or len(classes) != 2 or len(y_true) == 0:
        return {}
    positive = classes[1]
    truth = np.asarray(y_true, dtype=object) == positive
    flagged = np.asarray(predicted, dtype=object).astype(str) == str(positive)
    out: dict[str, str] = {}
    if not truth.any():
        why = f"no label is the positive class {positive!r}"
        out.update(recall=why, roc_auc=why, pr_auc=why)
        if not flagged.any():
            out["f1"] = f"{why} and the model flagged none"
    elif truth.all():
        why = f"every label is the positive class {positive!r}"
        out.update(roc_auc=why, pr_auc=why)
    if not flagged.any():
        out["precision"] = f"the model flagged no row as {positive!r}"
    return out
