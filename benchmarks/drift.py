"""Drift detector benchmark: computation time, false alarms, detection delay, GIL cost.

Times both paths of `DriftDetector`: `summarize` (what the service computes online) and
`run` (the Evidently report built for ``/drift/report`` and the offline command).

python -m benchmarks.drift                       # BENTOML_HOME's fraud-mlp:latest
python -m benchmarks.drift --model fraud-mlp:latest --windows 20

Uses the service's own `DriftDetector` with the default `DriftConfig` on rows from the
synthetic generator, scored by the stored model. Writes ``benchmarks/results/drift.json``,
``drift.md`` and ``docs/drift-report.png`` (a matplotlib rendering of a shifted run's report
figures: per-feature drift scores and the score distribution).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from benchmarks.provenance import provenance
from fraud_detection.drift.config import DriftConfig
from fraud_detection.drift.detector import DriftDetector
from fraud_detection.drift.detector import DriftRun
from fraud_detection.drift.reference import ReferenceProfile
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.scorer import OnnxScorer
from training.data import generate_transactions

RESULTS = Path(__file__).parent / "results"
FIGURE = Path(__file__).parents[1] / "docs" / "drift-report.png"
BASE_FRAUD_RATE = 0.0017  # the generator's default, as in the quickstart training data
SHIFTS = ("v14_plus_2_std", "amount_times_3", "fraud_rate_times_20")


class Traffic:
    """Scored synthetic rows, optionally shifted as in the issue's acceptance tests."""

    def __init__(self, scorer: OnnxScorer, reference: ReferenceProfile) -> None:
        self.scorer = scorer
        self.v14_std = float(reference.features["V14"].std())

    def rows(self, n: int, seed: int, shift: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        rate = BASE_FRAUD_RATE * (20 if shift == "fraud_rate_times_20" else 1)
        features = generate_transactions(n, fraud_rate=rate, seed=seed)[list(FEATURE_NAMES)]
        x = features.to_numpy(np.float32)
        if shift == "v14_plus_2_std":
            x[:, FEATURE_NAMES.index("V14")] += 2 * self.v14_std
        elif shift == "amount_times_3":
            x[:, FEATURE_NAMES.index("Amount")] *= 3
        return x, self.scorer.predict_proba(x)


def timing(detector: DriftDetector, traffic: Traffic, repeats: int) -> dict[str, Any]:
    rows = detector.config.window_rows
    online, wall, cpu, html = [], [], [], []
    run: DriftRun | None = None
    for i in range(repeats):
        x, s = traffic.rows(rows, seed=500 + i)
        for _ in range(10):  # the online path: milliseconds, so repeat it for a stable figure
            started = time.perf_counter()
            detector.summarize(x, s)
            online.append(time.perf_counter() - started)
        started, cpu_started = time.perf_counter(), time.process_time()
        run = detector.run(x, s)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        started = time.perf_counter()
        run.html()
        html.append(time.perf_counter() - started)
    return {
        "window_rows": rows,
        "repeats": repeats,
        "summarize_ms_median": round(float(np.median(online)) * 1000, 2),
        "report_wall_s_median": round(float(np.median(wall)), 3),
        "report_cpu_s_median": round(float(np.median(cpu)), 3),
        "report_wall_s": [round(w, 3) for w in wall],
        "html_render_s_median": round(float(np.median(html)), 3),
    }


def false_alarms(detector: DriftDetector, traffic: Traffic, windows: int) -> dict[str, Any]:
    """Fresh generator seeds (the same family as training), one full window each."""
    alarms = []
    for i in range(windows):
        summary = detector.summarize(*traffic.rows(detector.config.window_rows, seed=10_000 + i))
        alarms.append(
            {
                "seed": 10_000 + i,
                "drift_detected": summary.drift_detected,
                "drifted_features": summary.drifted_features,
                "prediction_drift": summary.prediction.drift_detected,
                "max_feature_score": round(max(f.score for f in summary.features), 4),
            }
        )
    rate = sum(a["drift_detected"] for a in alarms) / windows
    return {"windows": windows, "false_alarm_rate": rate, "per_window": alarms}


def detection_delay(
    detector: DriftDetector, traffic: Traffic, shift: str, step_rows: int, max_steps: int
) -> tuple[dict[str, Any], DriftRun | None, np.ndarray]:
    """A full in-distribution window, then shifted rows `step_rows` at a time; a computation
    after each step (as ``FRAUD_DRIFT_EVERY_ROWS=step_rows`` would). Returns the rows of
    shifted traffic seen when drift was first reported."""
    n = detector.config.window_rows
    x, s = traffic.rows(n, seed=20_000)
    seen = 0
    for step in range(1, max_steps + 1):
        new_x, new_s = traffic.rows(step_rows, seed=30_000 + step, shift=shift)
        x, s = np.vstack([x, new_x])[-n:], np.concatenate([s, new_s])[-n:]
        seen += step_rows
        if detector.summarize(x, s).drift_detected:
            run = detector.run(x, s)  # the report, for the figure
            return (
                {
                    "shift": shift,
                    "detected": True,
                    "shifted_rows_until_detection": seen,
                    "windows_until_detection": round(seen / n, 2),
                    "computations": step,
                    "drifted_features": run.summary.drifted_features,
                    "prediction_drift": run.summary.prediction.drift_detected,
                    "predicted_fraud_rate": run.summary.prediction.fraud_rate,
                    "reference_fraud_rate": run.summary.prediction.reference_fraud_rate,
                },
                run,
                s,
            )
    return {"shift": shift, "detected": False, "shifted_rows_seen": seen}, None, s


def gil_cost(detector: DriftDetector, traffic: Traffic, seconds: float) -> dict[str, Any]:
    """Rows/s of ONNX scoring in the main thread (batches of 64, as the batcher forms them),
    alone and while a thread runs online drift computations back to back: the worst case of
    keeping the detector in the worker's process (the default cadence is far sparser)."""
    x, s = traffic.rows(detector.config.window_rows, seed=1)
    batch = x[:64]

    def score_rate() -> float:
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            traffic.scorer.predict_proba(batch)
            done += len(batch)
        return done / (time.perf_counter() - started)

    alone = score_rate()
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            detector.summarize(x, s)

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    time.sleep(1.0)  # let the first computation start
    contended = score_rate()
    stop.set()
    thread.join()
    return {
        "scoring_rows_per_s_alone": round(alone),
        "scoring_rows_per_s_with_continuous_drift_thread": round(contended),
        "slowdown": round(1 - contended / alone, 3),
        "default_duty_cycle_cap": DriftConfig().max_cpu_share,
    }


def plot(run: DriftRun, window_scores: np.ndarray, reference: ReferenceProfile, path: Path) -> None:
    """The shifted run's per-feature drift scores and score distributions, as the report
    shows them (a matplotlib rendering: no browser here to screenshot the HTML)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = run.summary
    fig, (bars, hist) = plt.subplots(1, 2, figsize=(13, 4.8), width_ratios=[2.2, 1])
    names = [f.feature for f in summary.features]
    scores = [f.score for f in summary.features]
    colors = ["#d62728" if f.drifted else "#4c72b0" for f in summary.features]
    bars.bar(names, scores, color=colors)
    bars.axhline(summary.features[0].threshold, color="k", ls="--", lw=1, label="threshold")
    bars.set_yscale("log")
    bars.set_ylabel(f"drift score ({summary.features[0].method}, normed)")
    bars.set_title(
        f"Per-feature drift, {summary.window_rows} rows: drifted {summary.drifted_features} "
        f"(share {summary.drift_share:.1%})"
    )
    bars.tick_params(axis="x", rotation=90)
    bars.legend()
    bins = np.linspace(0, 1, 41)
    hist.hist(reference.scores, bins=bins, density=True, alpha=0.6, label="reference (validation)")
    hist.hist(window_scores, bins=bins, density=True, alpha=0.6, label="window")
    hist.set_yscale("log")
    hist.set_xlabel("fraud probability")
    p = summary.prediction
    hist.set_title(
        f"Prediction drift: score {p.score.score:.3f}; fraud rate {p.fraud_rate:.2%} "
        f"vs {p.reference_fraud_rate:.2%}",
        fontsize=9,
    )
    hist.legend()
    fig.suptitle(f"Evidently {summary.evidently_version} drift report, {summary.model}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict[str, Any]) -> str:
    t, fa, g = results["timing"], results["false_alarms"], results["gil"]
    lines = [
        "# Drift detector benchmark",
        "",
        f"{results['machine']}; {results['date']}; model {results['model']} "
        f"(reference {results['reference_rows']} training rows, score reference "
        f"{results['score_reference']}); default `DriftConfig` "
        f"({t['window_rows']}-row window, {results['config']['method']} threshold "
        f"{results['config']['threshold']}, Time ignored).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| online computation (`summarize`), {t['window_rows']} rows | "
        f"{t['summarize_ms_median']} ms |",
        f"| Evidently report (`run`, for /drift/report), median of {t['repeats']} | "
        f"{t['report_wall_s_median']} s wall, {t['report_cpu_s_median']} s CPU |",
        f"| HTML rendering of the report | {t['html_render_s_median']} s |",
        f"| false-alarm rate, {fa['windows']} in-distribution windows | "
        f"{fa['false_alarm_rate']:.0%} |",
    ]
    for d in results["detection"]:
        if d["detected"]:
            value = (
                f"{d['shifted_rows_until_detection']} shifted rows "
                f"({d['windows_until_detection']} window), features {d['drifted_features']}, "
                f"prediction drift {d['prediction_drift']}"
            )
        else:
            value = f"not detected after {d['shifted_rows_seen']} rows"
        lines.append(f"| detection delay, {d['shift']} | {value} |")
    lines.append(
        f"| ONNX scoring in the same process while online drift runs back to back | "
        f"{g['scoring_rows_per_s_alone']} → {g['scoring_rows_per_s_with_continuous_drift_thread']}"
        f" rows/s ({g['slowdown']:.0%} slower; the default cadence caps drift at "
        f"{g['default_duty_cycle_cap']:.0%} of a worker's time) |"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="fraud-mlp:latest")
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-rows", type=int, default=1000)
    parser.add_argument("--gil-seconds", type=float, default=8.0)
    args = parser.parse_args()

    stored = bentoml.models.get(args.model)
    reference = ReferenceProfile.from_model_dir(stored.path)
    config = DriftConfig()
    detector = DriftDetector(reference, config, model=str(stored.tag))
    traffic = Traffic(OnnxScorer.from_directory(stored.path, intra_op_threads=1), reference)

    detector.run(*traffic.rows(config.window_rows, seed=0))  # warm-up (first-call imports)
    results: dict[str, Any] = {
        "provenance": provenance("benchmarks.drift", None),
        "machine": f"{os.cpu_count()} logical CPUs ({platform.machine()}), "
        f"Python {platform.python_version()}",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": str(stored.tag),
        "reference_rows": len(reference.features),
        "score_reference": f"{reference.score_source} ({len(reference.scores)} rows)",
        "config": {
            "window_rows": config.window_rows,
            "method": config.method,
            "threshold": config.threshold,
            "ignore_features": sorted(config.ignore_features),
        },
        "timing": timing(detector, traffic, args.repeats),
        "false_alarms": false_alarms(detector, traffic, args.windows),
        "detection": [],
    }
    for shift in SHIFTS:
        delay, run, scores = detection_delay(detector, traffic, shift, args.step_rows, 5)
        results["detection"].append(delay)
        if shift == "v14_plus_2_std" and run is not None:
            plot(run, scores, reference, FIGURE)
    results["gil"] = gil_cost(detector, traffic, args.gil_seconds)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "drift.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "drift.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
