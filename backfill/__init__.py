"""Spark backfills: re-score stored transactions with the served models and the same rules.

``python -m backfill --input <parquet or csv> --output <dir> --model mlp [--challenger ...]``.
The job imports the serving modules (schema, `OnnxScorer`, the model store) and is never
imported by them.
"""
