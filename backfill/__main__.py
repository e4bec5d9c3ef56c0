"""``python -m backfill``: re-score stored transactions on Spark with the served models.

    python -m backfill --input data/history.parquet --output out/backfill --model mlp \\
        [--challenger distilbert] [--master local[*] | spark://host:7077]

Reads Parquet or CSV (a path, folder or glob; ``gs://`` on GCP), applies the rules of
``POST /predict`` to every row, scores the valid ones with the champion (and the challenger)
from the BentoML store, and writes ``<output>/scores/`` (Parquet, partitioned by date),
``<output>/rejects/`` (each broken row with its column and reason) and
``<output>/summary.json``. A rerun of the same input replaces its rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from backfill.job import Backfill
from backfill.job import BackfillError
from backfill.job import run


def parse(argv: list[str] | None) -> Backfill:
    parser = argparse.ArgumentParser(
        prog="python -m backfill", description=__doc__.split("\n")[0].strip("`: ")
    )
    parser.add_argument("--input", required=True, help="Parquet or CSV: a path, folder or glob")
    parser.add_argument("--output", required=True, help="folder of scores/, rejects/, summary")
    parser.add_argument("--model", default="mlp", help="champion: a kind or a store tag")
    parser.add_argument("--challenger", help="scored beside the champion: a kind or a tag")
    parser.add_argument("--master", help="local[*] (default) or spark://host:7077")
    parser.add_argument("--format", choices=("parquet", "csv"), help="default: from the name")
    parser.add_argument("--id-column", help="transaction ids (default: transaction_id if any)")
    parser.add_argument("--label-column", help="0/1 labels (default: Class if any)")
    parser.add_argument("--date-column", help="partition by this column's date (default: today)")
    parser.add_argument(
        "--bootstrap-rounds", type=int, default=200, help="for the promotion evidence"
    )
    parser.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting"
    )
    args = parser.parse_args(argv)
    conf = {}
    for item in args.conf:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--conf {item!r}: expected KEY=VALUE")
        conf[key] = value
    return Backfill(
        input=args.input,
        output=args.output,
        model=args.model,
        challenger=args.challenger,
        master=args.master,
        input_format=args.format,
        id_column=args.id_column,
        label_column=args.label_column,
        date_column=args.date_column,
        bootstrap_rounds=args.bootstrap_rounds,
        conf=conf,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    backfill = parse(argv)
    try:
        summary = run(backfill, argv=["python", "-m", "backfill", *argv])
    except BackfillError as e:
        print(f"backfill: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
