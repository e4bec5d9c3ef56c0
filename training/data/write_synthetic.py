"""Write the embedded synthetic dataset as a CSV of the ULB schema (``make data`` without DVC).

python -m training.data.write_synthetic data/creditcard.csv --rows 50000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.data.synthetic import generate_transactions


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--fraud-rate", type=float, default=0.0017)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    frame = generate_transactions(args.rows, fraud_rate=args.fraud_rate, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame)} synthetic rows ({int(frame['Class'].sum())} frauds) to {args.out}")
    return args.out


if __name__ == "__main__":
    main()
