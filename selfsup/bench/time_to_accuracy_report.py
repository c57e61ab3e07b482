"""The time-to-accuracy table (markdown) and figure (PNG) of :mod:`selfsup.bench.time_to_accuracy`:
per preset, the k-NN top-1 at each mark, the mean over seeds and the spread (max - min)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from selfsup.bench.time_to_accuracy import TimedRun

__all__ = ["curves", "format_time_to_accuracy", "plot_time_to_accuracy"]


def curves(runs: list[TimedRun]) -> dict[str, dict[float, list[float]]]:
    """``{preset: {mark minutes: [k-NN top-1 of each seed]}}``, presets in their run order."""
    table: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for mark in run.marks:
            table[run.name][mark.minutes].append(mark.knn_top1)
    return table


def _cell(values: list[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {(max(values) - min(values)) / 2:.2f}"


def format_time_to_accuracy(
    runs: list[TimedRun], pixels_knn: float | None = None, pixels_linear: float | None = None
) -> str:
    """One row per preset: k-NN top-1 (%) at each mark (mean ± half the spread over seeds), the
    final encoder's linear probe when measured, the throughput (calibrated before the run, then
    the run's own over its training time, where recorded), steps and epochs trained, and the
    evaluation time per mark."""
    if not runs:
        return "(no runs)"
    table = curves(runs)
    marks = sorted({m for per_mark in table.values() for m in per_mark})
    head = " | ".join("random init" if m == 0 else f"{m:g} min" for m in marks)
    with_linear = any(r.linear_top1 is not None for r in runs)
    if with_linear:
        head += " | linear (end)"
    columns = len(marks) + with_linear
    lines = [
        f"| preset | seeds | {head} | img/s calibrated → run | steps (epochs) | eval s/mark |",
        "|---|---|" + "---:|" * columns + "---:|---:|---:|",
    ]
    for name, per_mark in table.items():
        mine = [r for r in runs if r.name == name]
        seeds = ",".join(str(r.seed) for r in mine)
        cells = " | ".join(_cell(per_mark[m]) if m in per_mark else "" for m in marks)
        if with_linear:
            probes = [r.linear_top1 for r in mine if r.linear_top1 is not None]
            cells += " | " + (_cell(probes) if probes else "")
        img_s = f"{sum(r.img_per_s for r in mine) / len(mine):.0f}"
        sustained = [r.run_img_per_s for r in mine if r.run_img_per_s is not None]
        if len(sustained) == len(mine):  # only where every seed's run recorded its own
            img_s += f" → {sum(sustained) / len(sustained):.0f}"
        steps = sum(r.steps for r in mine) / len(mine)
        epochs = steps / mine[0].steps_per_epoch
        evals = [m.eval_s for r in mine for m in r.marks]
        eval_s = sum(evals) / max(len(evals), 1)
        lines.append(
            f"| {name} | {seeds} | {cells} | {img_s} | {steps:.0f} ({epochs:.2f}) | {eval_s:.0f} |"
        )
    notes = [
        "",
        f"Machine: {runs[0].machine}. k-NN: the `selfsup eval knn` protocol (whole training "
        "split as the bank, whole test split as queries). Minutes count training only; each run's "
        "schedule is sized to its budget from a calibrated throughput, then re-planned from the "
        "run's own sustained speed at 10, 30 and 60% of the budget to end at 97% of it.",
    ]
    if pixels_knn is not None:
        notes.append(f"Raw pixels under the same protocol: {pixels_knn:.2f}%.")
    if pixels_linear is not None:
        notes.append(
            f"Linear (end): the final encoder under `selfsup eval linear`'s protocol (all labels); "
            f"raw pixels {pixels_linear:.2f}%."
        )
    return "\n".join(lines + notes)


def plot_time_to_accuracy(
    runs: list[TimedRun], path: str | Path, pixels_knn: float | None = None, title: str = ""
) -> Path:
    """k-NN top-1 against training minutes, one line per preset (mean over seeds, the band
    spans the seeds), raw pixels dashed; written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, per_mark in curves(runs).items():
        xs = sorted(per_mark)
        means = [sum(per_mark[x]) / len(per_mark[x]) for x in xs]
        (line,) = ax.plot(xs, means, marker="o", label=name)
        if any(len(per_mark[x]) > 1 for x in xs):
            low = [min(per_mark[x]) for x in xs]
            high = [max(per_mark[x]) for x in xs]
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
    if pixels_knn is not None:
        ax.axhline(pixels_knn, color="grey", linestyle="--", label="raw pixels")
    ax.set_xlabel("minutes of pre-training (evaluation excluded)")
    ax.set_ylabel("k-NN top-1 (%)")
    ax.set_title(title or "time to accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
