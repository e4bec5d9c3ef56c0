"""Write a serving benchmark's results as JSON, a Markdown table with target checks, and a plot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: User count at which the issue's ratio targets are read.
TARGET_USERS = {"ceiling": 32, "batching_gain": 64, "drift_cost": 32}


@dataclass(frozen=True)
class TargetCheck:
    """One performance target, the figure measured for it, and whether it was met."""

    target: str
    measured: str
    met: bool


def _level(results: dict[str, Any], variant: str, users: int) -> dict[str, Any] | None:
    levels = results["variants"].get(variant, {}).get("levels", [])
    return next((lv for lv in levels if lv["users"] == users), None)


def check_targets(results: dict[str, Any]) -> list[TargetCheck]:
    """The issue's targets, for whichever variants and user counts this run measured."""
    checks: list[TargetCheck] = []
    n = TARGET_USERS["ceiling"]
    noop, mlp = _level(results, "noop", n), _level(results, "mlp-batching", n)
    if noop and mlp:
        ratio = mlp["requests_per_s"] / noop["requests_per_s"]
        checks.append(
            TargetCheck(
                f"MLP batching req/s >= 0.8 x no-op ceiling @{n} users",
                f"{ratio:.2f}x",
                ratio >= 0.8,
            )
        )
        checks.append(
            TargetCheck(
                f"MLP batching: 0 failed requests @{n} users",
                str(mlp["failures"]),
                mlp["failures"] == 0,
            )
        )
        p99 = mlp["p99_ms"] / noop["p99_ms"]
        checks.append(
            TargetCheck(
                f"MLP batching p99 <= 3 x ceiling p99 @{n} users", f"{p99:.2f}x", p99 <= 3.0
            )
        )
    n = TARGET_USERS["batching_gain"]
    on, off = (
        _level(results, "distilbert-batching", n),
        _level(results, "distilbert-no-batching", n),
    )
    if on and off:
        gain = on["rows_per_s"] / off["rows_per_s"]
        checks.append(
            TargetCheck(
                f"DistilBERT batching >= 3 x batching off @{n} users", f"{gain:.2f}x", gain >= 3.0
            )
        )
    for model in ("mlp", "distilbert"):
        ours = {
            lv["users"]: lv
            for lv in results["variants"].get(f"{model}-batching", {}).get("levels", [])
        }
        base = {
            lv["users"]: lv
            for lv in results["variants"].get(f"{model}-fastapi-torch", {}).get("levels", [])
        }
        common = sorted(set(ours) & set(base))
        if common:
            ratios = [ours[u]["rows_per_s"] / base[u]["rows_per_s"] for u in common]
            measured = ", ".join(f"{u}u {r:.1f}x" for u, r in zip(common, ratios, strict=True))
            checks.append(
                TargetCheck(
                    f"{model} batching ahead of FastAPI + PyTorch at every load",
                    measured,
                    min(ratios) > 1.0,
                )
            )
    n = TARGET_USERS["drift_cost"]
    with_log = _level(results, "mlp-batching", n)
    without = _level(results, "mlp-batching-no-drift-log", n)
    if with_log and without:
        cost = 1.0 - with_log["requests_per_s"] / without["requests_per_s"]
        checks.append(
            TargetCheck(
                f"drift-log hook costs <= 5% throughput @{n} users (MLP)",
                f"{100 * cost:.1f}%",
                cost <= 0.05,
            )
        )
    mlp_levels = results["variants"].get("mlp-batching", {}).get("levels", [])
    if mlp_levels:
        worst = max(lv["rss_mb_worker"] for lv in mlp_levels)
        checks.append(
            TargetCheck("MLP serving RSS per process <= 400 MB", f"{worst:.0f} MB", worst <= 400)
        )
    return checks


def markdown(results: dict[str, Any]) -> str:
    """Tables: settings, every variant x load, raw throughput, targets."""
    s = results["settings"]
    m = results["machine"]
    lines = [
        f"# Serving benchmark on {m['host']}",
        "",
        f"{m['logical_cpus']} logical CPUs ({m['cpu']}), {m['memory_gb']} GB, Python "
        f"{m['python']}; {results['started']}. Locust (closed loop, no wait) and the server "
        "share this machine. "
        f"{s['seconds_per_level']} s per load, each after a {s['warmup_seconds']} s warm-up at "
        "that load; "
        f"{s.get('bentoml_workers', 1)} BentoML worker(s), the FastAPI baseline in one process; "
        f"request mix (rows:share) {s['request_mix']}, mean {s['mean_rows_per_request']:.2f} "
        f"rows per request; rows from {s['data']}.",
        "",
        "| variant | users | req/s | rows/s | p50 ms | p95 ms | p99 ms | failures | RSS MB (all / largest process) |",  # noqa: E501
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, v in results["variants"].items():
        for lv in v["levels"]:
            failures = str(lv["failures"])
            if lv["failures_by_status"]:
                failures += (
                    " (" + ", ".join(f"{k}: {c}" for k, c in lv["failures_by_status"].items()) + ")"
                )
            lines.append(
                f"| {name} | {lv['users']} | {lv['requests_per_s']:.0f} | {lv['rows_per_s']:.0f} | "
                f"{lv['p50_ms']:.0f} | {lv['p95_ms']:.0f} | {lv['p99_ms']:.0f} | {failures} | "
                f"{lv['rss_mb_total']:.0f} / {lv['rss_mb_worker']:.0f} |"
            )
    if results["raw"]:
        lines += [
            "",
            "Raw ONNX Runtime, no HTTP (`benchmarks.raw_throughput`):",
            "",
            "| model | providers | batch | rows/s | ms per call (p50) |",
            "|---|---|---:|---:|---:|",
        ]
        for raw in results["raw"].values():
            for r in raw["results"]:
                lines.append(
                    f"| {raw['model']} | {raw['providers'][0]} | {r['batch_size']} | "
                    f"{r['rows_per_s']:.0f} | {r['ms_per_call_p50']:.3f} |"
                )
    checks = check_targets(results)
    if checks:
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {c.target} | {c.measured} | {'yes' if c.met else 'no'} |" for c in checks]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Throughput (rows/s) against p50 and p99 latency, one colour per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, (name, v) in enumerate(results["variants"].items()):
        color = f"C{i}"
        x = [lv["rows_per_s"] for lv in v["levels"]]
        ax.plot(x, [lv["p99_ms"] for lv in v["levels"]], "o-", color=color, label=f"{name} p99")
        ax.plot(x, [lv["p50_ms"] for lv in v["levels"]], "x--", color=color, alpha=0.6)
        for lv in v["levels"]:
            ax.annotate(
                str(lv["users"]),
                (lv["rows_per_s"], lv["p99_ms"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("throughput (rows/s)")
    ax.set_ylabel("latency (ms): p99 solid, p50 dashed; labels = users")
    ax.set_title(f"Serving throughput vs latency on {results['machine']['host']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: dict[str, Any], out_dir: Path, stem: str) -> Path:
    """Write ``<stem>.json``, ``.md`` and ``.png`` in `out_dir`; returns the path stem."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / stem
    results = {**results, "targets": [c.__dict__ for c in check_targets(results)]}
    base.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    base.with_suffix(".md").write_text(markdown(results))
    plot(results, base.with_suffix(".png"))
    return base
