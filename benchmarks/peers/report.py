"""Write a peer comparison's results: ``<stem>.json``, ``<stem>.md`` (tables) and ``<stem>.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _f(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _lone(server: dict[str, Any], when: str) -> float | None:
    lone = server.get("lone", {}).get(when)
    return lone["p50_ms"] if lone else None


def _rss(server: dict[str, Any]) -> str:
    rss = server.get("rss_mb")
    return f"{rss['total']:.0f} / {rss['largest']:.0f}" if rss else "–"


def _rows100(server: dict[str, Any]) -> str:
    r = server.get("rows100")
    if not r:
        return "–"
    errors = f" ({r['errors']} err)" if r["errors"] else ""
    return f"{r['rows_per_s']:,.0f}{errors}"


def _ok(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in results["servers"].items() if s.get("status") == "ok"}


def markdown(results: dict[str, Any]) -> str:
    """A table per wrk load and per Locust load, the peers' configurations, what failed."""
    m, s = results["machine"], results["settings"]
    ok = _ok(results)
    lines = [
        f"# Serving frameworks compared on {m['host']}: the same ONNX model, the same JSON API",
        "",
        f"{m['logical_cpus']} logical CPUs ({m['cpu']}), {m['memory_gb']} GB, Python "
        f"{m['python']}; started {results['started']}, {results.get('wall_s', 0) / 60:.1f} "
        "min in all. Every server loads the stored model through our own `OnnxScorer` "
        "(one ONNX Runtime thread, spinning off), validates with our pydantic request model "
        "and answers our prediction objects; clients and server share this machine's cores.",
        "",
        f"- Score parity: {s['parity_rows']} rows ({s['data']}) in one request, each server "
        f"against {results['reference']}: |diff| <= {s['tolerance']:g} and equal `is_fraud`, "
        "plus one bad request (V1 a string) answered 4xx.",
        f"- wrk: `wrk -t2 -c<C> -d{s['wrk_seconds']:g}s --latency` with a one-row body, after "
        f"a {s['warmup_seconds']:g} s warm-up at the same C, loads ascending. Errors: non-2xx "
        "answers plus socket errors.",
        f"- Lone request: {s['lone_requests']} sequential one-row requests on one keep-alive "
        f"connection, fresh (after start-up and the parity check) and 1 s after the "
        f"{s['burst_connections']}-connection wrk pass (the burst)"
        + (", and 60 s after it" if s.get("after_minute") else "")
        + ".",
        f"- Rows/s at 100 rows: wrk at {s['rows100_connections']} connections with a "
        f"100-row body for {s['wrk_seconds']:g} s.",
        "- RSS: the server's process tree after the loads, MB summed / largest process (shared "
        "pages count in every process that maps them).",
        "",
    ]
    for c in s["connections"]:
        lines += [
            f"## wrk, {c} connection{'s' if c != 1 else ''}",
            "",
            "| server | version | config | req/s | p50 ms | p99 ms | errors | lone p50 ms "
            "fresh / after burst | rows/s @100 rows | RSS MB |",
            "|---|---|---|---:|---:|---:|---:|---|---:|---:|",
        ]
        for name, srv in ok.items():
            level = next((w for w in srv.get("wrk", []) if w["connections"] == c), None)
            if level is None:
                continue
            lines.append(
                f"| {name} | {srv['framework']} {srv['version']} | {srv['short']} | "
                f"{_f(level['requests_per_s'])} | {_f(level['p50_ms'], 1)} | "
                f"{_f(level['p99_ms'], 1)} | {level['errors']} | "
                f"{_f(_lone(srv, 'fresh'), 2)} / {_f(_lone(srv, 'after_burst'), 2)} | "
                f"{_rows100(srv)} | {_rss(srv)} |"
            )
        lines.append("")
    users = s.get("locust_users") or []
    for u in users:
        lines += [
            f"## Locust, {u} user{'s' if u != 1 else ''} (request mix {s['locust_mix']}, "
            f"mean {s['locust_mean_rows']:.1f} rows; {s['locust_seconds']:g} s)",
            "",
            "| server | req/s | rows/s | p50 ms | p99 ms | failures |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, srv in ok.items():
            level = next((lv for lv in srv.get("locust", []) if lv["users"] == u), None)
            if level is None:
                continue
            lines.append(
                f"| {name} | {_f(level['requests_per_s'])} | "
                f"{_f(level['requests_per_s'] * s['locust_mean_rows'])} | "
                f"{_f(level['p50_ms'])} | {_f(level['p99_ms'])} | {level['failures']} |"
            )
        lines.append("")
    if any(srv.get("lone", {}).get("after_minute") for srv in ok.values()):
        lines += [
            "## Lone request p50 / p99 ms",
            "",
            "| server | fresh | after burst | after a minute |",
            "|---|---|---|---|",
        ]
        for name, srv in ok.items():
            cells = []
            for when in ("fresh", "after_burst", "after_minute"):
                lone = srv.get("lone", {}).get(when)
                cells.append(f"{lone['p50_ms']:.2f} / {lone['p99_ms']:.2f}" if lone else "–")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Configurations",
        "",
        "| server | version | route | readiness | start-up s | parity max abs diff | bad request "
        "| load avg before (1/5/15 min) |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for name, srv in results["servers"].items():
        parity = srv.get("parity") or {}
        lines.append(
            f"| {name} | {srv['framework']} {srv.get('version', '?')} | `{srv['route']}` | "
            f"`GET {srv['ready_path']}` | {_f(srv.get('startup_s'), 1)} | "
            f"{parity.get('max_abs_diff', '–')} | {parity.get('bad_request_status', '–')} | "
            + " / ".join(f"{x:.1f}" for x in srv.get("load_average_before", []))
            + " |"
        )
    lines.append("")
    for name, srv in results["servers"].items():
        lines.append(f"- **{name}**: {srv['config']}")
    not_ok = {n: srv for n, srv in results["servers"].items() if srv.get("status") != "ok"}
    if not_ok:
        lines += ["", "## Not measured", ""]
        for name, srv in not_ok.items():
            reason = " ".join(str(srv.get("reason", "")).split())[:600]
            lines.append(f"- **{name}** ({srv.get('status')}): {reason}")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """req/s and p99 against wrk connections, one line per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rps, ax_p99) = plt.subplots(1, 2, figsize=(12, 5))
    for i, (name, srv) in enumerate(_ok(results).items()):
        levels = sorted(srv.get("wrk", []), key=lambda w: w["connections"])
        if not levels:
            continue
        x = [w["connections"] for w in levels]
        style = "--" if "batching" in name else "-"
        kw = {"color": f"C{i % 10}", "linestyle": style, "marker": "o", "label": name}
        ax_rps.plot(x, [w["requests_per_s"] for w in levels], **kw)
        ax_p99.plot(x, [w["p99_ms"] for w in levels], **kw)
    connections = results["settings"]["connections"]
    for ax, label in ((ax_rps, "requests/s (one-row requests)"), (ax_p99, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(connections, [str(c) for c in connections])
        ax.set_xlabel("wrk connections")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_p99.set_yscale("log")
    ax_rps.legend(fontsize=8)
    fig.suptitle(f"Same ONNX model and JSON API, per framework, on {results['machine']['host']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict[str, Any], out_dir: Path, stem: str, *, png: bool = True) -> Path:
    """``<stem>.json``, ``.md`` and (unless `png` is false) ``.png`` in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / stem
    base.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    base.with_suffix(".md").write_text(markdown(results))
    if png:
        plot(results, base.with_suffix(".png"))
    return base
