"""A semicolon CSV with decimal commas: trained as sniffed, and read with `--decimal .`.

Real data: scikit-learn's bundled breast-cancer table (569 rows, 30 measurements with
decimals), as written, and rounded to 1 decimal (fewer distinct values, so text columns are
kept as categories: the case that used to train silently and badly).
Usage: PYTHONPATH=src python bench/decimal_comma.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sklearn.datasets import load_breast_cancer

from pgmlops.client import Client
from pgmlops.errors import DataError


def main() -> None:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: str(c).replace(" ", "_"))
    frame["target"] = frame["target"].map({0: "malignant", 1: "benign"})
    with tempfile.TemporaryDirectory() as tmp:
        for variant, table in (("as written", frame), ("rounded", frame.round(1))):
            path = Path(tmp) / f"cancer-{variant[:2]}.csv"
            table.to_csv(path, sep=";", decimal=",", index=False)
            for decimal in (None, "."):
                root = Path(tmp) / f"run-{variant[:2]}-{decimal}"
                client = Client(f"sqlite:///{root}.db", artifact_root=str(root))
                label = f"{variant}, decimal={decimal or 'sniffed'}"
                try:
                    result = client.train_run(
                        path, target="target", model_name="c", decimal=decimal, onnx=False
                    )
                except DataError as exc:
                    print(f"{label}: refused (exit 3): {str(exc)[:120]}…")
                    continue
                card = result.version.card
                numeric = sum(f.kind == "numeric" for f in card.feature_schema.features)
                warned = sum("but is read as text" in w for w in result.warnings)
                print(
                    f"{label}: holdout AUC {card.metrics['roc_auc']:.4f}, {numeric} numeric of "
                    f"{len(card.feature_schema.features)} features, {warned} columns warned "
                    "as numbers read as text"
                )


if __name__ == "__main__":
    main()
