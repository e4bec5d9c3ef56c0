"""Compare the synthetic generator with a real ULB CSV: per-class means and stds.

    python -m training.data.compare_synthetic ../shared/data/creditcard_real_sample.csv.gz \\
        --out docs/synthetic-vs-real.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import TARGET_NAME
from training.data.csv_source import read_transactions_csv
from training.data.synthetic import generate_transactions


def compare(real: pd.DataFrame, synthetic: pd.DataFrame) -> pd.DataFrame:
    """One row per (feature, class): real and synthetic mean and std."""
    rows = []
    for label, name in ((0, "genuine"), (1, "fraud")):
        r = real.loc[real[TARGET_NAME] == label, list(FEATURE_NAMES)]
        s = synthetic.loc[synthetic[TARGET_NAME] == label, list(FEATURE_NAMES)]
        for feature in FEATURE_NAMES:
            rows.append(
                {
                    "feature": feature,
                    "class": name,
                    "real_mean": r[feature].mean(),
                    "synthetic_mean": s[feature].mean(),
                    "real_std": r[feature].std(),
                    "synthetic_std": s[feature].std(),
                }
            )
    table = pd.DataFrame(rows)
    # Mean gap in units of the real std: comparable across features of different scale.
    table["mean_gap_in_std"] = (table.synthetic_mean - table.real_mean).abs() / table.real_std
    table["std_ratio"] = table.synthetic_std / table.real_std
    return table


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table (no extra dependency)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real_csv", type=Path)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=Path("docs/synthetic-vs-real.md"))
    args = parser.parse_args()
    real = read_transactions_csv(args.real_csv)
    # Same fraud share as the real file, so both classes have enough rows to compare.
    synthetic = generate_transactions(args.rows, fraud_rate=float(real[TARGET_NAME].mean()), seed=0)
    table = compare(real, synthetic)
    summary = table.groupby("class")[["mean_gap_in_std", "std_ratio"]].median()
    lines = [
        "# Synthetic generator vs real ULB rows",
        "",
        f"Command: `python -m training.data.compare_synthetic {args.real_csv} --rows {args.rows}`",
        f"Real file: {len(real)} rows ({int(real[TARGET_NAME].sum())} frauds); "
        f"synthetic: {len(synthetic)} rows (seed 0, same fraud share).",
        "",
        "Median over the 30 features: |mean gap| in units of the real std, and std ratio "
        "(synthetic / real; 1.0 is a perfect match).",
        "",
        markdown_table(summary.round(3).reset_index()),
        "",
        "Per feature:",
        "",
        markdown_table(table.round(3)),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
