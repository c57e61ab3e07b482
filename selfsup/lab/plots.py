"""One PNG per claim: each plotted measure as mean ± spread over the seeds, every seed a dot.

A sweep (batch size, temperature, mask ratio...) is a line against the arms' ``x``; other
claims are one bar per arm. matplotlib is optional (``pip install 'selfsup[report]'``): without
it no figure is drawn and the caller is told so.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfsup.lab.measures import MEASURES
from selfsup.progress import say

if TYPE_CHECKING:
    from selfsup.lab.claim import ClaimResult

__all__ = ["plot_claim"]


def plot_claim(result: ClaimResult, path: Path) -> Path | None:
    """Draw ``result``'s figure to ``path``; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("no figure: matplotlib is not installed (pip install 'selfsup[report]')")
        return None
    claim, spec = result.claim, result.claim.plot
    panels = 1 if spec.kind == "grouped" else len(spec.measures)
    width = max(5.5, 4.2 * panels)
    fig, axes = plt.subplots(1, panels, figsize=(width, 3.6), squeeze=False)
    if spec.kind == "grouped":
        _grouped(axes[0][0], result)
    for ax, measure in zip(axes[0], spec.measures if spec.kind != "grouped" else ()):
        arms = result.results.arms(measure)
        if spec.kind == "sweep":
            xs = [float(a.x) for a in claim.arms if a.x is not None]
            sweep = [m for a, m in zip(claim.arms, arms) if a.x is not None]
            means = [m.mean for m in sweep]
            spreads = [m.spread if m.n else 0.0 for m in sweep]
            ax.errorbar(xs, means, yerr=spreads, marker="o", capsize=4, color="tab:blue")
            for x, m in zip(xs, sweep):
                ax.scatter([x] * m.n, m.finite, s=10, color="black", alpha=0.5, zorder=3)
            if spec.log_x and min(xs) > 0:
                ax.set_xscale("log")
                ax.set_xticks(xs)
                ax.set_xticklabels([f"{x:g}" for x in xs])
            ax.set_xlabel(spec.x_label)
        else:
            positions = list(range(len(arms)))
            means = [m.mean if m.n else 0.0 for m in arms]
            spreads = [m.spread if m.n else 0.0 for m in arms]
            ax.bar(positions, means, yerr=spreads, capsize=4, color="tab:blue", alpha=0.7)
            for i, m in enumerate(arms):
                ax.scatter([i] * m.n, m.finite, s=10, color="black", zorder=3)
                if not m.n:
                    ax.text(i, 0, "diverged", ha="center", va="bottom", rotation=90)
            ax.set_xticks(positions)
            ax.set_xticklabels([m.label for m in arms], rotation=20, ha="right", fontsize=8)
            finite = [v for m in arms for v in m.finite]
            if finite and min(finite) > 0:  # zoom on the differences, not on the zero
                low, high = min(finite), max(finite)
                pad = 0.15 * (high - low) or 0.05 * abs(high) or 1.0
                ax.set_ylim(max(0.0, low - pad), high + pad)
        ax.set_ylabel(MEASURES[measure].label)
        ax.grid(alpha=0.3)
    seeds = ",".join(str(s) for s in result.seeds)
    title = f"{claim.number}. {claim.name}: {result.verdict.text} (seeds {seeds})"
    fig.suptitle("\n".join(textwrap.wrap(title, int(width * 11))), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _grouped(ax: Any, result: ClaimResult) -> None:
    """A bar per measure for each arm, side by side, every seed a dot."""
    measures = result.claim.plot.measures
    width = 0.8 / len(measures)
    names = [a.name for a in result.claim.arms]
    finite: list[float] = []
    for j, measure in enumerate(measures):
        arms = result.results.arms(measure)
        xs = [i + (j - (len(measures) - 1) / 2) * width for i in range(len(arms))]
        means = [m.mean if m.n else 0.0 for m in arms]
        spreads = [m.spread if m.n else 0.0 for m in arms]
        ax.bar(xs, means, width, yerr=spreads, capsize=4, label=MEASURES[measure].label)
        for x, m in zip(xs, arms):
            ax.scatter([x] * m.n, m.finite, s=10, color="black", zorder=3)
            finite += m.finite
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    if finite and min(finite) > 0:
        low, high = min(finite), max(finite)
        pad = 0.5 * (high - low) or 1.0
        ax.set_ylim(max(0.0, low - pad), high + pad)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
