"""Cross-validated model quality on a creditcard CSV: the served models against baselines.

    python -m benchmarks.quality --data ../shared/data/creditcard_real_sample.csv.gz
    make quality DATA=../shared/data/creditcard_real_sample.csv.gz

Every model sees the same repeated stratified folds (5 x 4 by default). `mlp` and `distilbert`
are what ``python -m training`` ships, trained by `training.pipeline.fit_model` from the Hydra
configs on the fold's training rows only: 5 cross-fitted networks and LightGBM boosters on
the same inner folds, blended and calibrated on their out-of-fold scores (the served booster
refitted on all the fold's training rows), exported to one ONNX graph and scored by ONNX
Runtime, as the service scores them. `*_networks` drops the boosters
(``ensemble.trees.enabled=false``) and `*_single` is one network (``ensemble.folds=1``).
Baselines: logistic regression, scikit-learn's HistGradientBoostingClassifier, and XGBoost if
installed.
Writes ``<name>.json``, ``<name>.md`` and ``<name>.png`` (PR curves) in ``--output-dir``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.metrics import brier_score_loss
from sklearn.metrics import precision_recall_curve
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks.provenance import provenance
from fraud_detection.prevalence import genuine_weight
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import TARGET_NAME
from training.data import read_transactions_csv
from training.evaluation import recall_at_fpr

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
#: Fraud prevalence of the full ULB dataset: 492 frauds among 284,807 transactions.
FULL_DATA_FRAUDS, FULL_DATA_GENUINE = 492, 284_315
#: The served models as ``python -m training`` ships them (cross-fitted ensembles), and the
#: single network they replaced: (model kind, Hydra overrides).
SERVED: dict[str, tuple[str, list[str]]] = {
    "mlp": ("mlp", []),
    "mlp_networks": ("mlp", ["ensemble.trees.enabled=false"]),
    "mlp_single": ("mlp", ["ensemble.folds=1"]),
    "distilbert": ("distilbert", []),
    "distilbert_networks": ("distilbert", ["ensemble.trees.enabled=false"]),
    "distilbert_single": ("distilbert", ["ensemble.folds=1"]),
}
#: Paired comparisons reported with an interval: (challenger, incumbent).
COMPARISONS = (
    ("mlp", "mlp_networks"),
    ("mlp", "mlp_single"),
    ("mlp", "hist_gradient_boosting"),
    ("mlp", "xgboost"),
    ("distilbert", "distilbert_networks"),
    ("distilbert", "distilbert_single"),
    ("distilbert", "hist_gradient_boosting"),
)
PAIRED_METRICS = ("auprc_base_rate", "recall_at_1pct_fpr")
BASELINES = ("logistic_regression", "hist_gradient_boosting", "xgboost")
MODELS_DEFAULT = "mlp,mlp_networks,mlp_single,logistic_regression,hist_gradient_boosting,xgboost"
METRICS = (
    "auprc",
    "auprc_base_rate",
    "roc_auc",
    "recall_at_1pct_fpr",
    "recall_at_0.1pct_fpr",
    "brier",
    "training_seconds",
)


def base_rate_weights(labels: np.ndarray) -> np.ndarray:
    """Row weights that make frauds 0.172% of the total, as in the full dataset."""
    rate = FULL_DATA_FRAUDS / (FULL_DATA_FRAUDS + FULL_DATA_GENUINE)
    return np.where(labels == 1, 1.0, genuine_weight(labels, rate))


def fold_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The ranking and calibration metrics of one model on one held-out fold."""
    return {
        "auprc": float(average_precision_score(labels, scores)),
        "auprc_base_rate": float(
            average_precision_score(labels, scores, sample_weight=base_rate_weights(labels))
        ),
        "roc_auc": float(roc_auc_score(labels, scores)),
        "recall_at_1pct_fpr": recall_at_fpr(labels, scores, 0.01),
        "recall_at_0.1pct_fpr": recall_at_fpr(labels, scores, 0.001),
        "brier": float(brier_score_loss(labels, scores)),
    }


#: Fits on a fold's training rows (features and Class) and returns a scorer for held-out features.
Fitter = Callable[[pd.DataFrame], Callable[[np.ndarray], np.ndarray]]


def served_model_fitter(kind: str, overrides: list[str]) -> Fitter:
    """Train `kind` exactly as ``python -m training model=<kind> <overrides>`` does; score via
    ONNX. Nested: cross-fitting, early stopping, calibration and the threshold all happen
    inside the fold's training rows; the held-out fold is only scored."""
    from hydra import compose
    from hydra import initialize_config_dir

    from training.config import register_configs
    from training.pipeline import fit_model

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={kind}", *overrides])

    def fit(train: pd.DataFrame) -> Callable[[np.ndarray], np.ndarray]:
        features = train.loc[:, list(FEATURE_NAMES)].to_numpy(dtype=np.float32)
        fitted = fit_model(cfg, features, train[TARGET_NAME].to_numpy(dtype=np.int64))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            fitted.export(path, features)
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def score(features: np.ndarray) -> np.ndarray:
            (probabilities,) = session.run(
                ["fraud_probability"], {"features": features.astype(np.float32)}
            )
            return probabilities.astype(np.float64)

        return score

    return fit


def sklearn_fitter(make: Callable[[], Any]) -> Fitter:
    def fit(train: pd.DataFrame) -> Callable[[np.ndarray], np.ndarray]:
        estimator = make()
        # float32, as the held-out rows are scored (and as the service receives them)
        estimator.fit(train.loc[:, list(FEATURE_NAMES)].to_numpy(np.float32), train[TARGET_NAME])
        return lambda features: estimator.predict_proba(features)[:, 1]

    return fit


def baseline_fitters(seed: int) -> dict[str, Fitter]:
    """Logistic regression, HistGradientBoosting, and XGBoost when it is installed."""
    fitters: dict[str, Fitter] = {
        "logistic_regression": sklearn_fitter(
            lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        ),
        "hist_gradient_boosting": sklearn_fitter(
            lambda: HistGradientBoostingClassifier(random_state=seed)
        ),
    }
    try:
        import xgboost
    except ImportError:
        return fitters
    fitters["xgboost"] = sklearn_fitter(
        lambda: xgboost.XGBClassifier(n_estimators=300, tree_method="hist", random_state=seed)
    )
    return fitters


@dataclass
class ModelResult:
    """Per-fold metrics of one model and its out-of-fold scores, one row per repeat."""

    folds: list[dict[str, float]]
    out_of_fold: np.ndarray  # (repeats, rows)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            m: {
                "mean": float(np.mean([f[m] for f in self.folds])),
                "std": float(np.std([f[m] for f in self.folds])),
            }
            for m in METRICS
        }


def run(
    frame: pd.DataFrame,
    fitters: dict[str, Fitter],
    *,
    folds: int,
    repeats: int,
    seed: int,
    log: Callable[[str], None] = print,
) -> dict[str, ModelResult]:
    """Fit and score every model on the same repeated stratified folds."""
    labels = frame[TARGET_NAME].to_numpy()
    features = frame.loc[:, list(FEATURE_NAMES)].to_numpy(dtype=np.float32)
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    results = {
        name: ModelResult(folds=[], out_of_fold=np.full((repeats, len(frame)), np.nan))
        for name in fitters
    }
    for index, (train_rows, test_rows) in enumerate(splitter.split(features, labels)):
        train = frame.iloc[train_rows]
        for name, fit in fitters.items():
            started = time.perf_counter()
            score = fit(train)
            seconds = time.perf_counter() - started
            scores = score(features[test_rows])
            metrics = {**fold_metrics(labels[test_rows], scores), "training_seconds": seconds}
            results[name].folds.append(metrics)
            results[name].out_of_fold[index // folds, test_rows] = scores
            log(
                f"fold {index + 1}/{folds * repeats} {name}: AUPRC@base "
                f"{metrics['auprc_base_rate']:.4f}, recall@1%FPR "
                f"{metrics['recall_at_1pct_fpr']:.3f}, Brier {metrics['brier']:.5f}, "
                f"{seconds:.1f} s"
            )
    return results


def paired_difference(
    challenger: list[dict[str, float]],
    incumbent: list[dict[str, float]],
    metric: str,
    folds: int,
) -> dict[str, float]:
    """Mean per-fold difference with a 95% interval (Nadeau and Bengio's corrected t).

    Both models saw the same repeated folds, so per-fold differences cancel the split-to-split
    spread that dominates each model's own std. Repeated folds overlap in their training rows,
    which makes a plain t interval too narrow; the corrected resampled t widens the variance by
    ``n_test / n_train`` = 1 / (folds - 1) to account for it.
    """
    from scipy import stats

    diffs = np.array([c[metric] - i[metric] for c, i in zip(challenger, incumbent, strict=True)])
    n = len(diffs)
    variance = (1 / n + 1 / (folds - 1)) * diffs.var(ddof=1)
    half_width = float(stats.t.ppf(0.975, n - 1) * np.sqrt(variance))
    mean = float(diffs.mean())
    return {
        "mean": mean,
        "ci95_low": mean - half_width,
        "ci95_high": mean + half_width,
        "wins": int(np.sum(diffs > 0)),
        "pairs": n,
    }


def pooled_difference(
    challenger: np.ndarray,
    incumbent: np.ndarray,
    labels: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """AUPRC @ 0.172% of pooled out-of-fold scores, challenger minus incumbent, averaged over
    repeats, with a 95% paired bootstrap interval over rows (frauds and genuine rows resampled
    separately, so every resample keeps the sample's fraud count).

    Each row is scored once per repeat by a model that never saw it, so the pooled difference
    uses every fraud at once instead of a fifth per fold. The interval covers which rows were
    sampled, not which models training happened to produce: narrower than the corrected t,
    and the two are reported side by side.
    """

    def difference(rows: np.ndarray) -> float:
        y = labels[rows]
        weights = base_rate_weights(y)
        return float(
            np.mean(
                [
                    average_precision_score(y, c[rows], sample_weight=weights)
                    - average_precision_score(y, i[rows], sample_weight=weights)
                    for c, i in zip(challenger, incumbent, strict=True)
                ]
            )
        )

    rng = np.random.default_rng(seed)
    frauds, genuine = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    draws = [
        difference(
            np.r_[
                rng.choice(frauds, len(frauds), replace=True),
                rng.choice(genuine, len(genuine), replace=True),
            ]
        )
        for _ in range(resamples)
    ]
    low, high = np.percentile(draws, [2.5, 97.5])
    mean = difference(np.arange(len(labels)))
    return {"mean": mean, "ci95_low": float(low), "ci95_high": float(high)}


def frauds_to_resolve(difference: dict[str, float], frauds: int) -> int | None:
    """How many frauds a sample needs before `difference`'s 95% interval clears zero, if the
    margin stays as measured and the interval narrows as one over the square root of the
    frauds (the bootstrap's rate); None when the margin is not positive (no sample size helps).

    With the frauds at hand it says whether a comparison could have been decided at all: a
    margin a fifth of the interval's half-width needs 25 times the frauds.
    """
    margin = difference["mean"]
    if margin <= 0:
        return None
    half_width = margin - difference["ci95_low"]
    return max(frauds, math.ceil(frauds * (half_width / margin) ** 2))


def compare(
    results: dict[str, ModelResult], labels: np.ndarray, folds: int
) -> list[dict[str, Any]]:
    """Every `COMPARISONS` pair present, on every `PAIRED_METRICS` metric, per fold; and on
    pooled out-of-fold AUPRC @ 0.172%."""
    comparisons = []
    for challenger, incumbent in COMPARISONS:
        if challenger not in results or incumbent not in results:
            continue
        for metric in PAIRED_METRICS:
            comparisons.append(
                {
                    "challenger": challenger,
                    "incumbent": incumbent,
                    "metric": metric,
                    **paired_difference(
                        results[challenger].folds, results[incumbent].folds, metric, folds
                    ),
                }
            )
        pooled = pooled_difference(
            results[challenger].out_of_fold, results[incumbent].out_of_fold, labels
        )
        comparisons.append(
            {
                "challenger": challenger,
                "incumbent": incumbent,
                "metric": "pooled_auprc_base_rate",
                **pooled,
                "frauds_to_resolve": frauds_to_resolve(pooled, int(labels.sum())),
            }
        )
    return comparisons


def check_targets(comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The served ensemble must beat the single network and the gradient-boosted trees on
    AUPRC at the base rate by a paired margin whose interval excludes zero (both intervals)."""
    labels = {
        "auprc_base_rate": "per-fold AUPRC @ 0.172%, corrected t",
        "pooled_auprc_base_rate": "pooled out-of-fold AUPRC @ 0.172%, row bootstrap",
    }
    return [
        {
            "target": f"{c['challenger']} beats {c['incumbent']}: {labels[c['metric']]}, "
            "95% interval above 0",
            "measured": f"{c['mean']:+.4f} [{c['ci95_low']:+.4f}, {c['ci95_high']:+.4f}]"
            + (f", better in {c['wins']}/{c['pairs']} folds" if "wins" in c else ""),
            "met": c["ci95_low"] > 0,
        }
        for c in comparisons
        if c["metric"] in labels and c["incumbent"] != "xgboost"
    ]


def markdown(report: dict[str, Any]) -> str:
    """The results table (mean ± std over folds) and the target checks."""
    header = (
        "| model | AUPRC | AUPRC @ 0.172% | ROC-AUC | recall @ 1% FPR | recall @ 0.1% FPR "
        "| Brier | training s |"
    )
    lines = [
        f"# Model quality: {report['data']['file']} ({report['data']['rows']} rows, "
        f"{report['data']['frauds']} frauds), {report['folds']} folds x {report['repeats']} "
        "repeats",
        "",
        f"Machine: {report['machine']}. Command: `{report['command']}`",
        "",
        header,
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in report["summary"].items():
        cells = [
            f"{s[m]['mean']:.4f} ± {s[m]['std']:.4f}"
            for m in METRICS
            if m not in ("brier", "training_seconds")
        ]
        cells.append(f"{s['brier']['mean']:.5f} ± {s['brier']['std']:.5f}")
        cells.append(f"{s['training_seconds']['mean']:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Paired differences on the same {report['folds']} x {report['repeats']} folds "
        "(challenger minus incumbent). Per-fold metrics: mean over folds, 95% interval by "
        "the corrected resampled t of Nadeau and Bengio. `pooled_auprc_base_rate`: AUPRC @ "
        "0.172% of each repeat's pooled out-of-fold scores (all frauds at once), averaged over "
        "repeats, 95% paired bootstrap over rows. *Frauds to decide*: how many frauds the "
        "pooled interval would need to clear zero at the measured margin (it narrows as "
        f"1/sqrt(frauds); this sample has {report['data']['frauds']}):",
        "",
        "| challenger | incumbent | metric | difference | 95% interval | folds better "
        "| frauds to decide |",
        "|---|---|---|---:|---|---:|---:|",
    ]
    frauds = report["data"]["frauds"]
    for c in report["comparisons"]:
        better = f"{c['wins']}/{c['pairs']}" if "wins" in c else ""
        needed = ""
        if "frauds_to_resolve" in c:
            n = c["frauds_to_resolve"]
            needed = "never (margin ≤ 0)" if n is None else "decided" if n <= frauds else f"{n:,}"
        lines.append(
            f"| {c['challenger']} | {c['incumbent']} | {c['metric']} | {c['mean']:+.4f} | "
            f"[{c['ci95_low']:+.4f}, {c['ci95_high']:+.4f}] | {better} | {needed} |"
        )
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for c in report["targets"]:
        lines.append(f"| {c['target']} | {c['measured']} | {'yes' if c['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, ModelResult], labels: np.ndarray, path: Path) -> None:
    """PR curves of every model from the first repeat's out-of-fold scores, pooled over folds.

    A pooled AP mixes five differently fitted models per curve, so it differs from the mean of
    the per-fold APs in the table; the curves show shape, the table the figures.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    weights = base_rate_weights(labels)
    panels = ((None, "sample prevalence"), (weights, "weighted to the true 0.172% base rate"))
    for ax, (weight, title) in zip(axes, panels, strict=True):
        for name, result in results.items():
            precision, recall, _ = precision_recall_curve(
                labels, result.out_of_fold[0], sample_weight=weight
            )
            ap = average_precision_score(labels, result.out_of_fold[0], sample_weight=weight)
            ax.plot(recall, precision, label=f"{name} (pooled AP {ap:.3f})")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"Out-of-fold PR curves, {title}")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="creditcard CSV (.csv or .csv.gz)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--models",
        default=MODELS_DEFAULT,
        help=f"comma-separated, from {', '.join([*SERVED, *BASELINES])}; xgboost is skipped "
        "when it is not installed",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="Hydra override for the served models, e.g. trainer.class_weight_power=0.3",
    )
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--name", default="quality")
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")  # one line per fold instead of epoch bars

    frame = read_transactions_csv(args.data)
    wanted = args.models.split(",")
    fitters = {
        name: served_model_fitter(kind, [*args.override, *overrides])
        for name, (kind, overrides) in SERVED.items()
        if name in wanted
    }
    fitters |= {k: f for k, f in baseline_fitters(args.seed).items() if k in wanted}
    started = time.perf_counter()
    results = run(frame, fitters, folds=args.folds, repeats=args.repeats, seed=args.seed)
    summary = {name: result.summary() for name, result in results.items()}
    labels = frame[TARGET_NAME].to_numpy()
    comparisons = compare(results, labels, args.folds)
    report = {
        "provenance": provenance("benchmarks.quality", argv, model=None),
        "data": {
            "file": Path(args.data).name,
            "rows": len(frame),
            "frauds": int(labels.sum()),
        },
        "folds": args.folds,
        "repeats": args.repeats,
        "seed": args.seed,
        "overrides": args.override,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores",
        "command": "python -m benchmarks.quality --data "
        + Path(args.data).name
        + ("" if args.models == MODELS_DEFAULT else f" --models {args.models}")
        + ("" if args.repeats == parser.get_default("repeats") else f" --repeats {args.repeats}")
        + "".join(f" --override {o}" for o in args.override),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "summary": summary,
        "comparisons": comparisons,
        "targets": check_targets(comparisons),
        "per_fold": {name: result.folds for name, result in results.items()},
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    (args.output_dir / f"{args.name}.md").write_text(markdown(report))
    plot(results, labels, args.output_dir / f"{args.name}.png")
    print(markdown(report))
    print(f"wall time {report['wall_seconds']} s; files in {args.output_dir}")


if __name__ == "__main__":
    main()
