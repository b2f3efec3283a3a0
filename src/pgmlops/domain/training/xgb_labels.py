"""XGBoost's classifier with the dataset's own class labels (it takes only 0..k-1 itself)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.preprocessing import LabelEncoder
from xgboost import XGBClassifier


class LabelledXGBClassifier(XGBClassifier):
    """Encodes labels for XGBoost; classes_ holds the real labels, as every sklearn classifier.

    onnxmltools' converter reads classes_ and writes them as the ONNX class labels, so the
    ONNX copy answers with the same labels as the pipeline.
    """

    _labels: np.ndarray | None = None

    @property
    def classes_(self) -> np.ndarray:
        # During XGBoost's own fit, classes_ must be its 0..k-1 (it checks y against them).
        return np.arange(self.n_classes_) if self._labels is None else self._labels

    def fit(self, X: Any, y: Any, **kwargs: Any) -> LabelledXGBClassifier:
        encoder = LabelEncoder().fit(y)
        self._labels = None
        super().fit(X, encoder.transform(y), **kwargs)
        self._labels = encoder.classes_
        return self

    def predict(self, X: Any, **kwargs: Any) -> np.ndarray:
        return self.classes_[np.asarray(super().predict(X, **kwargs), dtype=int)]
