"""``build_report``: one or several run directories -> report.html and its PNG figures."""

from __future__ import annotations

import importlib
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from selfsup.eval.run_encoder import RunEncoder, load_encoder
from selfsup.report.curves import DESCRIPTIONS, collect_curves, plot_curve
from selfsup.report.embedding import embed_subset, plot_embedding, reduce_2d
from selfsup.report.page import Picture, Section, render_page
from selfsup.report.pictures import save_attention, save_mae_reconstructions
from selfsup.report.runs import RunRecords, read_run, run_labels
from selfsup.report.summary import summary_table_html
from selfsup.report.table import eval_table_html, stale_results_note
from selfsup.report.tensorboard import require_tensorboard, write_tensorboard
from selfsup.train.checkpoint import CheckpointError

__all__ = ["REPORT_DIR", "REPORT_FILE", "build_report"]

REPORT_DIR = "report"
REPORT_FILE = "report.html"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _slugs(labels: list[str]) -> list[str]:
    slugs = [re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_.") or "run" for label in labels]
    if len(set(slugs)) < len(slugs):
        slugs = [f"{i + 1}-{s}" for i, s in enumerate(slugs)]
    return slugs


def _out_dir(paths: list[Path], out: str | Path | None) -> Path:
    """Where the report goes: ``--out``, else RUN/report/ of a single run. Never into a run
    directory other than its report/ folder."""
    if out is None:
        if len(paths) > 1:
            raise ValueError(
                "a report of several runs belongs to no single run: pass --out DIR, e.g. "
                "--out reports/compare"
            )
        return paths[0] / REPORT_DIR
    target = Path(out).resolve()
    for path in paths:
        run, report = path.resolve(), path.resolve() / REPORT_DIR
        inside_run = target == run or run in target.parents
        if inside_run and not (target == report or report in target.parents):
            raise ValueError(
                f"--out {out} is inside the run directory {path}; a report writes only into "
                f"{path / REPORT_DIR} or a folder outside the runs"
            )
    return Path(out)


def _figures_of(page: Path) -> set[str]:
    """The PNG files a report.html in this folder shows (none when there is no page)."""
    if not page.is_file():
        return set()
    return set(re.findall(r'<img src="([^"/\\]+\.png)"', page.read_text(errors="replace")))


def _load(run: RunRecords, device: str | torch.device) -> RunEncoder | str:
    """The run's evaluated encoder, or why there is none."""
    try:
        return load_encoder(run.path, device)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        return f"{run.label}: no encoder to draw ({err})"


def _embedding(
    run: RunRecords,
    encoder: RunEncoder,
    path: Path,
    max_points: int,
    device: str | torch.device,
    seed: int,
) -> Picture | str:
    subset = embed_subset(encoder, max_points, device, seed)
    if isinstance(subset, str):
        return f"{run.label}: no embedding map: {subset}"
    features, labels, names = subset
    if len(features) < 3:
        return f"{run.label}: no embedding map: only {len(features)} test images"
    coords, how = reduce_2d(features, seed)
    data = run.cfg.data.eval_dataset or run.cfg.data.dataset
    title = f"{run.label}: {how} of {len(features)} {data} test images"
    plot_embedding(coords, labels, names, title, path)
    step = f", step {encoder.step}" if encoder.step is not None else ""
    caption = (
        f"the {encoder.network} encoder ({encoder.source}{step}), L2-normalised features, "
        f"{how} (seed {seed}). Healthy: classes form their own islands, related classes side "
        "by side; one mixed cloud, a line or a dot means the features do not tell the classes "
        "apart (a random encoder, or collapse). Distances between islands mean little"
    )
    return Picture(path.name, title, caption)


def build_report(
    run_dirs: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    embedding_points: int = 2000,
    device: str | torch.device = "cpu",
    tensorboard: bool = False,
    seed: int = 0,
    log: Callable[[str], None] = _stderr,
) -> Path:
    """Write ``report.html`` and its PNGs for ``run_dirs`` and return the page's path.

    One run: into ``RUN/report/`` unless ``out`` says otherwise; several runs need ``out``
    and are drawn side by side (curves overlaid, one table). ``embedding_points`` test images
    (seeded subset) are mapped to 2-D per run; 0 leaves the map out. ``tensorboard`` also
    converts each run's metrics.jsonl into ``RUN/tensorboard/``. Nothing else in a run
    directory is written. Progress goes to ``log`` (stderr).

    Raises:
        FileNotFoundError: a path does not exist or its run has no metrics.jsonl.
        ValueError: a path is not a run directory, a run is given twice, several runs without
            ``out``, ``out`` inside a run directory, matplotlib missing, or ``tensorboard``
            without the package.
    """
    if not run_dirs:
        raise ValueError("no run directory given")
    paths = [Path(p) for p in run_dirs]
    resolved = [p.resolve() for p in paths]
    for i, path in enumerate(resolved):
        if path in resolved[:i]:
            raise ValueError(f"{paths[i]} is given twice; name each run once")
    if embedding_points < 0:
        raise ValueError(f"embedding points must be >= 0, got {embedding_points}")
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise ValueError(
            "selfsup report draws with matplotlib: pip install matplotlib (or 'selfsup[report]')"
        ) from None
    if tensorboard:
        require_tensorboard()
    runs = [read_run(p, label) for p, label in zip(paths, run_labels(paths))]
    out_dir = _out_dir(paths, out)
    out_dir.mkdir(parents=True, exist_ok=True)
    slugs = _slugs([run.label for run in runs])
    started = time.perf_counter()

    log(f"report: {len(runs)} run(s) -> {out_dir}")
    sections = [Section("Runs", summary_table_html(runs))]

    curves = Section("Training curves", intro="From metrics.jsonl; see docs/report.md.")
    for curve in collect_curves(runs):
        log(f"report: curve {curve.key}")
        path = plot_curve(curve, out_dir / f"curve_{curve.name}.png")
        curves.pictures.append(Picture(path.name, curve.key, DESCRIPTIONS.get(curve.key, "")))
    if not curves.pictures:
        curves.notes.append("no train or epoch records in metrics.jsonl yet")
    sections.append(curves)

    log("report: evaluation table")
    evaluation = Section(
        "Evaluation",
        eval_table_html(runs),
        intro="Top-1 accuracy from each run's eval.json (hover a number for its settings); "
        "the best of each run and column in bold.",
    )
    for run in runs:
        note = stale_results_note(run)
        if note:
            evaluation.notes.append(note)
        superseded = len((run.eval or {}).get("superseded") or [])
        if superseded:
            evaluation.notes.append(
                f"{run.label}: {superseded} results of earlier encoders are not shown "
                "(eval.json 'superseded')"
            )
    sections.append(evaluation)

    embeddings = Section("Embedding map")
    pictures = Section("Pictures")
    for run, slug in zip(runs, slugs):
        log(f"report: {run.label}: loading the encoder")
        encoder = _load(run, device)
        if isinstance(encoder, str):
            embeddings.notes.append(encoder)
            continue
        if embedding_points:
            log(f"report: {run.label}: embedding map ({embedding_points} points at most)")
            made = _embedding(
                run, encoder, out_dir / f"{slug}_embedding.png", embedding_points, device, seed
            )
            if isinstance(made, Picture):
                embeddings.pictures.append(made)
            else:
                embeddings.notes.append(made)
        _pictures(run, encoder, slug, out_dir, seed, pictures, log)
    if not embedding_points:
        embeddings.notes.append("left out (embedding points 0)")
    sections.append(embeddings)
    if pictures.pictures or pictures.notes:
        sections.append(pictures)

    page = out_dir / REPORT_FILE
    subtitle = (
        f"{len(runs)} run(s): {', '.join(str(p) for p in paths)}. Written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')} in {time.perf_counter() - started:.1f} s; "
        "the PNG files next to this page belong to it."
    )
    earlier = _figures_of(page)
    page.write_text(render_page("selfsup report", subtitle, sections))
    for name in sorted(earlier - _figures_of(page)):  # an earlier report's, now unused
        (out_dir / name).unlink(missing_ok=True)
    if tensorboard:
        for run in runs:
            log(f"report: {run.label}: TensorBoard events -> {write_tensorboard(run)}")
    return page


def _pictures(
    run: RunRecords,
    encoder: RunEncoder,
    slug: str,
    out_dir: Path,
    seed: int,
    section: Section,
    log: Callable[[str], None],
) -> None:
    """MAE reconstructions (MAE runs) and cls-token attention maps (ViT runs) of ``run``."""
    from selfsup.backbones.vit import VisionTransformer
    from selfsup.methods.mae import MAE
    from selfsup.methods.registry import get_method

    if issubclass(get_method(run.cfg.method).cls, MAE):
        log(f"report: {run.label}: MAE reconstructions")
        path = out_dir / f"{slug}_mae_reconstructions.png"
        if (run.path / "checkpoints" / "last.pt").is_file():
            caption = save_mae_reconstructions(run.path, encoder, path, seed=seed)
            section.pictures.append(
                Picture(path.name, f"{run.label}: MAE reconstructions", caption)
            )
        else:
            section.notes.append(f"{run.label}: no MAE reconstructions: no checkpoints/last.pt")
    if isinstance(encoder.encoder, VisionTransformer):
        log(f"report: {run.label}: attention maps")
        path = out_dir / f"{slug}_attention.png"
        caption = save_attention(encoder, path)
        section.pictures.append(Picture(path.name, f"{run.label}: cls-token attention", caption))
