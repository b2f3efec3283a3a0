"""Old home of pgmlops.domain.training.xgb_labels: kept so models pickled before the regroup load.

regroup: re-export shim. A pickled pipeline names its classes by module path, and
joblib imports that path when it loads the model; a model card may also name an
estimator by this path. Nothing in pgmlops imports this module.
"""

from pgmlops.domain.training.xgb_labels import (
    LabelledXGBClassifier as LabelledXGBClassifier,
)
