"""The benchmark's tables (markdown) and where they go: stdout, a results file, a JSON log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

__all__ = [
    "format_comm",
    "format_knn",
    "format_result",
    "format_scaling",
    "format_throughput",
    "report",
]

# Issue #6 targets, printed next to the measurements.
TARGET_VIEWS_OVER_STEP = 5.0
TARGET_END_TO_END_OVER_STEP = 0.9
TARGET_METHOD_OVERHEAD = 0.10


def report(table: str, result: Any, write: str | None, json_path: str | None, command: str) -> None:
    """Print ``table``; append it to ``write`` (markdown, under ``command``) and ``result`` to
    ``json_path`` (one JSON line)."""
    print(table)
    stamp = time.strftime("%Y-%m-%d")
    if write:
        path = Path(write)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(f"\n### {stamp}: `{command}`\n\n{table}\n")
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(json.dumps({"date": stamp, "command": command, "result": result}) + "\n")


def _check(ok: bool) -> str:
    return "yes" if ok else "**no**"


def format_result(r: dict[str, Any]) -> str:
    """The markdown block of one :func:`~selfsup.bench.run_bench` result."""
    ms = 1000 * r["batch_size"]
    compiled = f", torch.compile (first call {r['compile_s']:.0f} s)" if r["compiled"] else ""
    lines = [
        f"{r['method']}, {r['backbone']}, batch {r['batch_size']}, {r['num_views']} views of "
        f"{r['view_size']} px, data {r['data']} ({r['workers']} loader workers), "
        f"{r['device']} ({r['precision']}{compiled}); {r['machine']}",
        "",
        "| measurement | images/s | ms/step |",
        "|---|---:|---:|",
    ]
    for label, key in (
        ("view pipeline alone", "views_img_s"),
        ("loader alone", "loader_img_s"),
        ("model step alone (views precomputed)", "step_img_s"),
        ("backbone fwd+bwd alone (same views)", "backbone_img_s"),
        ("end-to-end (loader + views + step)", "end_to_end_img_s"),
    ):
        lines.append(f"| {label} | {r[key]:.0f} | {ms / r[key]:.1f} |")
    lines += [
        "",
        "| ratio | measured | target | met |",
        "|---|---:|---:|---|",
        f"| view pipeline / model step | {r['views_over_step']:.1f}x | "
        f">= {TARGET_VIEWS_OVER_STEP:g}x | {_check(r['views_over_step'] >= TARGET_VIEWS_OVER_STEP)} |",
        f"| end-to-end / model step | {r['end_to_end_over_step']:.2f}x | "
        f">= {TARGET_END_TO_END_OVER_STEP:g}x | "
        f"{_check(r['end_to_end_over_step'] >= TARGET_END_TO_END_OVER_STEP)} |",
        f"| method overhead beyond backbone fwd+bwd | {100 * r['method_overhead']:+.0f}% | "
        f"<= {100 * TARGET_METHOD_OVERHEAD:.0f}% | "
        f"{_check(r['method_overhead'] <= TARGET_METHOD_OVERHEAD)} |",
        f"| data wait (share of end-to-end) | {100 * r['data_wait']:.0f}% | | |",
    ]
    if "views_over_torchvision" in r:
        lines.append(
            f"| our views / torchvision.transforms.v2 (2 workers) | "
            f"{r['views_over_torchvision']:.1f}x ({r['ours_views_img_s']:.0f} vs "
            f"{r['torchvision_views_img_s']:.0f} img/s) | | |"
        )
    lines += [
        "",
        f"FLOPs (FlopCounterMode, fwd+bwd): step {r['step_gflop']:.2f} GFLOP, backbone pass "
        f"{r['backbone_gflop']:.2f} GFLOP. Achieved: step {r['step_gflops']:.0f} GFLOP/s = "
        f"{100 * r['peak_fraction']:.1f}% of the measured {r['peak_dtype']} matmul peak "
        f"({r['matmul_peak_gflops']:.0f} GFLOP/s); backbone pass {r['backbone_gflops']:.0f} GFLOP/s.",
        f"Peak memory: {r['peak_memory_mib']:.0f} MiB ({r['memory_kind']}; "
        f"{r['memory_at_start_mib']:.0f} MiB before the model was built).",
    ]
    return "\n".join(lines)


def format_scaling(rows: list[dict[str, Any]], header: str = "") -> str:
    """The markdown table of :func:`~selfsup.bench.run_scaling` rows."""
    lines = [
        header,
        "",
        "| batch | model step ms | images/s | training_step forward ms | backbone fwd+bwd ms | "
        "step - backbone ms | step GFLOP | GFLOP beyond the backbone pass |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch_size']} | {r['step_ms']:.1f} | {r['step_img_s']:.0f} | "
            f"{r['forward_ms']:.1f} | {r['backbone_ms']:.1f} | {r['beyond_backbone_ms']:.1f} | "
            f"{r['step_gflop']:.2f} | {r['beyond_backbone_gflop']:.3f} |"
        )
    return "\n".join(lines)


def format_knn(rows: list[dict[str, Any]], header: str = "") -> str:
    """The markdown table of :func:`~selfsup.bench.run_knn_bench` rows."""
    lines = [
        header,
        "",
        "| bank rows | seconds | queries/s | bank MiB | similarity block bound MiB | "
        "full Q x N matrix MiB (never built) | peak memory of the call MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['bank']} | {r['seconds']:.2f} | {r['queries_per_s']:.0f} | {r['bank_mib']:.0f} | "
            f"{r['block_bound_mib']:.0f} | {r['full_matrix_mib']:.0f} | {r['call_peak_mib']:.0f} |"
        )
    if rows:
        lines += ["", f"Memory: {rows[0]['memory_kind']}, growth during the call."]
    return "\n".join(lines)


def _mb(size: float) -> str:
    """Bytes as MB (10^6 bytes), three significant digits."""
    return f"{size / 1e6:.3g}"


def format_comm(rows: list[dict[str, Any]], header: str = "") -> str:
    """The markdown table of :func:`~selfsup.bench.measure_comm` rows (``error``: the method
    failed), then each method's collectives by call site and the failures' tracebacks."""
    lines = [
        header,
        "",
        "| method | trainable params | gradient all-reduce MB/step (buckets) | "
        "other collectives MB/step | other calls/step | other / gradient |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    details, failures = [], []
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | failed (below) | | | | |")
            failures.append(f"**{r['method']}** failed:\n\n```\n{r['error'].strip()}\n```")
            continue
        ratio = r["other_bytes"] / r["grad_bytes"] if r["grad_bytes"] else float("nan")
        lines.append(
            f"| {r['method']} | {r['trainable_params']:,} | {_mb(r['grad_bytes'])} "
            f"({r['grad_buckets']:g}) | {_mb(r['other_bytes'])} | {r['other_calls']:g} | "
            f"{ratio:.2%} |"
        )
        sites = "; ".join(
            f"{s['kind']} {s['calls']:g}x {_mb(s['bytes'])} MB ({s['site']})" for s in r["sites"]
        )
        ddp = (
            f" **{r['ddp_python_calls']:g} from DDP's Python code**"
            if r["ddp_python_calls"]
            else ""
        )
        details.append(f"- {r['method']}: {sites or 'none'}{ddp}")
    counted = next((r["counted_steps"] for r in rows if "error" not in r), 0)
    lines += [
        "",
        f"Payload bytes per process per step, mean of steps 2..{counted + 1} (step 1 is warm-up, "
        "not counted): what each process contributes to a collective (all-reduce: its tensor; "
        "all-gather: its part). Over the wire a ring all-reduce sends and receives about "
        "2(W-1)/W times its payload, an all-gather (W-1) times it.",
        "",
        "Other collectives by call site (per step):",
        "",
        *details,
        *(["", *failures] if failures else []),
    ]
    return "\n".join(lines)


def format_throughput(rows: list[dict[str, Any]], header: str = "") -> str:
    """The markdown table of :func:`~selfsup.bench.measure_throughput` rows."""
    lines = [
        header,
        "",
        "| config (method) | launcher | processes | threads per process | global batch | "
        "images/s | speed-up vs plain 1 process |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    failures = []
    for r in rows:
        head = (
            f"| {r['config']} | {r['launcher']} | {r['processes']} | {r['threads']} | "
            f"{r['global_batch']} |"
        )
        if "error" in r:
            lines.append(f"{head} failed (below) | |")
            failures.append(f"`{r['command']}` failed:\n\n```\n{r['error'].strip()}\n```")
            continue
        speedup = f"{r['speedup']:.2f}x" if "speedup" in r else ""
        lines.append(f"{head} {r['img_per_s']:.0f} | {speedup} |")
    lines += [
        "",
        "Global images/s (every process's images) from metrics.jsonl, after the first logged "
        "window (warm-up).",
    ]
    lines += ["", *failures] if failures else []
    return "\n".join(lines)
