"""pgmlops's drift detection against Evidently's DataDriftPreset, on identical DataFrames.

Run from the main venv: ``python bench/drift_vs_evidently.py [--rows N] [--repeats R]``.
It builds the 1M x 1M x 20-feature frames of bench/drift_speed.py (10 numeric, 10
categorical; num_0, num_1 and cat_0 shifted), writes them to Parquet in a temp dir, times
``detect_drift`` here, then runs this same file with the Python of an Evidently venv
(default bench/.venv-evidently, made with ``python3.11 -m venv bench/.venv-evidently &&
bench/.venv-evidently/bin/pip install evidently==0.7.23 "pandas<3"``) on the same Parquet
files, and prints time, peak memory and the agreement of the per-feature verdicts.
Evidently is never a dependency of pgmlops; it only lives in that venv.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DEFAULT_PEER = BENCH / ".venv-evidently" / "bin" / "python"


def _peak_rss_mb() -> float:
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _rss_mb() -> float:
    """Current resident set size (Linux), to subtract what the frames themselves hold."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except OSError:
        return 0.0
    return pages * resource.getpagesize() / (1024 * 1024)


# -- the Evidently half: runs in the peer venv ------------------------------------------


def evidently_worker(reference: Path, current: Path, out: Path, repeats: int) -> None:
    """Time Evidently's DataDriftPreset on the Parquet frames; write verdicts and numbers."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref, cur = pd.read_parquet(reference), pd.read_parquet(current)
    numeric = [c for c in ref.columns if c.startswith("num_")]
    categorical = [c for c in ref.columns if c.startswith("cat_")]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    before = _rss_mb()
    reset = _reset_peak_rss()
    times, snapshot = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
        times.append(time.perf_counter() - started)
    assert snapshot is not None
    verdicts, scores, dataset = {}, {}, None
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            method, threshold, value = config["method"], config["threshold"], metric["value"]
            # p-value tests drift below the threshold, distances at or above it.
            drifted = value < threshold if "p_value" in method else value >= threshold
            verdicts[config["column"]] = bool(drifted)
            scores[config["column"]] = {"method": method, "value": value}
        elif config["type"].endswith("DriftedColumnsCount"):
            dataset = metric["value"]
    import evidently

    out.write_text(
        json.dumps(
            {
                "version": evidently.__version__,
                "pandas": pd.__version__,
                "times": times,
                "peak_rss_mb": _peak_rss_mb(),
                "frames_rss_mb": before,
                "peak_resettable": reset,
                "verdicts": verdicts,
                "scores": scores,
                "dataset": dataset,
            }
        )
    )


# -- the pgmlops half: runs in the main venv --------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="pgmlops runs (median)")
    parser.add_argument("--peer-repeats", type=int, default=1, help="Evidently runs")
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER)
    parser.add_argument("--evidently-worker", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evidently_worker:
        evidently_worker(*args.evidently_worker, repeats=args.peer_repeats)
        return
    if not args.peer_python.exists():
        sys.exit(f"no Evidently venv at {args.peer_python}; see this file's docstring")

    sys.path.insert(0, str(BENCH))
    from drift_speed import N_CATEGORICAL, N_NUMERIC, make_frames
    from pgmlops.domain.monitoring.drift import detect_drift
    from pgmlops.domain.policies import DriftPolicy

    reference, current = make_frames(args.rows, as_object=False)
    numeric = [f"num_{i}" for i in range(N_NUMERIC)]
    categorical = [f"cat_{i}" for i in range(N_CATEGORICAL)]
    print(f"{args.rows:,} reference x {args.rows:,} current rows, {N_NUMERIC}+{N_CATEGORICAL} cols")
    with tempfile.TemporaryDirectory(prefix="pgmlops-evidently-") as tmp:
        ref_path, cur_path, out = Path(tmp, "ref.parquet"), Path(tmp, "cur.parquet"), Path(tmp, "o")
        reference.to_parquet(ref_path, index=False)
        current.to_parquet(cur_path, index=False)

        frames = _rss_mb()
        reset = _reset_peak_rss()
        times, report = [], None
        for _ in range(args.repeats):
            started = time.perf_counter()
            report = detect_drift(
                reference, current, numeric=numeric, categorical=categorical, policy=DriftPolicy()
            )
            times.append(time.perf_counter() - started)
        assert report is not None
        ours_peak = _peak_rss_mb()
        ours = {f.name: f.drifted for f in report.features}

        cmd = [str(args.peer_python), __file__, "--peer-repeats", str(args.peer_repeats)]
        cmd += ["--evidently-worker", str(ref_path), str(cur_path), str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"Evidently run failed:\n{done.stderr[-2000:]}")
        peer = json.loads(out.read_text())

    ours_median, peer_median = statistics.median(times), statistics.median(peer["times"])
    print(
        f"pgmlops detect_drift: runs {', '.join(f'{t:.2f}' for t in times)} s, "
        f"median {ours_median:.2f} s"
    )
    extra = f"+{ours_peak - frames:.0f} MB over the frames' {frames:.0f} MB" if reset else "n/a"
    print(f"  peak RSS {ours_peak:.0f} MB ({extra})")
    print(
        f"Evidently {peer['version']} DataDriftPreset (pandas {peer['pandas']}): runs "
        f"{', '.join(f'{t:.2f}' for t in peer['times'])} s, median {peer_median:.2f} s"
    )
    peer_extra = (
        f"+{peer['peak_rss_mb'] - peer['frames_rss_mb']:.0f} MB over the frames' "
        f"{peer['frames_rss_mb']:.0f} MB"
        if peer["peak_resettable"]
        else "n/a"
    )
    print(f"  peak RSS {peer['peak_rss_mb']:.0f} MB ({peer_extra})")
    print(f"speed-up: {peer_median / ours_median:.1f}x")

    theirs = peer["verdicts"]
    same = [c for c in ours if ours[c] == theirs.get(c)]
    print(f"per-feature verdicts agree on {len(same)} of {len(ours)} features")
    print(f"  pgmlops drifted:   {', '.join(c for c in ours if ours[c]) or 'none'}")
    print(f"  Evidently drifted: {', '.join(c for c in theirs if theirs[c]) or 'none'}")
    for column in ours:
        if ours[column] != theirs.get(column):
            f = report.feature(column)
            s = peer["scores"].get(column, {})
            print(f"  differs on {column}: pgmlops {f.reason}; Evidently {s}")
    print(
        f"dataset drift: pgmlops {report.dataset_drift} ({report.share_drifted:.0%}), "
        f"Evidently {peer['dataset']}"
    )


if __name__ == "__main__":
    main()
