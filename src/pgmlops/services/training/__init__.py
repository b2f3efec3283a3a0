"""Train, evaluate and register a candidate version from a dataset and a training config.

`fit` fits in this process; `register` turns any fitted pipeline (local or Dask) into a
registered version with its card, ONNX copy and monitoring references.
"""

from pgmlops.services.training.fit import new_pipeline, order_classes, train_model
from pgmlops.services.training.register import (
    Fitted,
    Progress,
    TrainResult,
    primary_metric,
    register_fitted,
)

__all__ = [
    "Fitted",
    "Progress",
    "TrainResult",
    "new_pipeline",
    "order_classes",
    "primary_metric",
    "register_fitted",
    "train_model",
]
