"""Prediction drift's reference on real data: out-of-fold, final-model and served outputs.

Trains the bench's reference model (bench/honesty_bench.py) on one real dataset, rebuilds the
training split, and tests each window's outputs against four references built from the same
model: held-out rows' outputs, every labelled row's out-of-fold outputs, every row's final-model
outputs, and the served mix (final model on repeated training vectors, out of fold on vectors
seen once). Every reference is tested at its row count (no design effect), so the rates show
which one is what traffic gets. Usage (statsmodels on PYTHONPATH):

    PYTHONPATH=src:bench python bench/output_reference.py randhie 20
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import ks_2samp

from honesty_bench import Bench
from honesty_data import real_source
from pgmlops.domain.monitoring.design_effect import SampleDesign, repeated_rows
from pgmlops.domain.monitoring.drift import _output_drift
from pgmlops.domain.monitoring.profile import profile_output
from pgmlops.domain.predict import predict_outputs
from pgmlops.domain.schema import ReadOptions
from pgmlops.domain.training.crossfit import cross_fitted_scores
from pgmlops.domain.training.frame import prepare_training_frame
from pgmlops.domain.training.split import MIN_CLASS_ROWS, split_rows
from pgmlops.services.inference import load_pipeline


def main(name: str, windows: int) -> None:
    """Print each reference's alarms on in-distribution and shifted windows."""
    src = real_source(name)
    bench = Bench(src, Path(tempfile.mkdtemp()), promotion_rows=20_000)
    cfg = bench.ctx.settings.training
    options = ReadOptions(**cfg.model_dump(include=set(ReadOptions.__dataclass_fields__)))
    x, y, schema = prepare_training_frame(
        src.train, src.target, cfg.task, cfg.drop, options=options, min_class_rows=MIN_CLASS_ROWS
    )
    sp = split_rows(
        x, y, schema.task, test_size=cfg.test_size,
        validation_size=cfg.validation_size, seed=cfg.seed,
    )  # fmt: skip
    xt, yt = x.iloc[sp.train].reset_index(drop=True), y.iloc[sp.train].reset_index(drop=True)
    pipe = load_pipeline(bench.ctx.artifacts.read(bench.mv, "model"))
    card, task = bench.mv.card, bench.mv.card.task

    def vec(out: object) -> np.ndarray:
        if task == "binary":
            p = np.asarray(out.proba, dtype=float)  # type: ignore[attr-defined]
            return p[:, -1] if p.ndim == 2 else p
        return np.asarray(out.predicted, dtype=float)  # type: ignore[attr-defined]

    ft = vec(predict_outputs(pipe, card, xt))
    held = np.concatenate(
        [vec(predict_outputs(pipe, card, x.iloc[part])) for part in (sp.validation, sp.holdout)]
    )
    oof = vec(cross_fitted_scores(pipe, card, xt, yt, folds=cfg.reference_folds, seed=cfg.seed))
    repeated = repeated_rows(xt)
    print(f"training rows {len(xt)}, in a repeated vector {repeated.mean():.3f}; held {len(held)}")
    for label, m in (("repeated", repeated), ("seen once", ~repeated)):
        d = ft[m] - oof[m]
        print(
            f"training rows {label}: n={m.sum()} final mean {ft[m].mean():.4f} sd {ft[m].std():.4f}"
            f" | out-of-fold mean {oof[m].mean():.4f} sd {oof[m].std():.4f}"
            f" | difference mean {d.mean():.4f} sd {d.std():.4f}"
        )
    refs = {
        "held_out": held,
        "out_of_fold": np.concatenate([oof, held]),
        "final": np.concatenate([ft, held]),
        "served": np.concatenate([np.where(repeated, ft, oof), held]),
    }
    iid = SampleDesign(deff=1.0, share=1.0)
    profiles = {}
    for k, v in refs.items():
        out = profile_output(v, schema, seed=cfg.seed).model_copy(update={"design": iid})
        profiles[k] = bench.profile.model_copy(update={"output": out})
    policy = bench.settings.drift

    def run(key: str, size: int, seed: int) -> None:
        frame = src.draw[key](size * windows, seed, window=size)
        hits = dict.fromkeys(refs, 0)
        ks: dict[str, list[float]] = {k: [] for k in refs}
        cut = bench.windows(frame, size)
        for w in cut:
            col = "probability" if task == "binary" else "prediction"
            s = w.outputs[col].astype(float).to_numpy()
            for k, p in profiles.items():
                hits[k] += bool(_output_drift(p, s, policy).drifted)
                ks[k].append(ks_2samp(s, refs[k]).statistic)
        cells = ", ".join(f"{k} {hits[k]}/{len(cut)} (KS {np.mean(ks[k]):.4f})" for k in refs)
        print(f"{key} {size}: {cells}", flush=True)

    started = time.time()
    for size in (5000, 2500, 500, 200):
        if size <= (src.pool_rows or 0):
            run("none", size, 1000 + size)
    for key, size in (("one_0.2", 5000), ("one_0.5", 500), ("one_0.5", 5000)):
        run(key, size, 5000 + size)
    for key in ("four_0.2", "catmix"):
        run(key, 5000, 10_000)
    print(f"{time.time() - started:.0f}s, load {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20)
