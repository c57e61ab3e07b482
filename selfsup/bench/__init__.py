"""``selfsup bench``: what one training step costs, and where the time goes.

Everything is measured in one process, on the same data and configuration as a real run
(images/s counts images, each of which yields all of the method's views):

* views -- the method's view recipe alone on a uint8 batch already on the device;
* loader -- the data loader alone (an in-memory gather, or files decoded by DataLoader workers);
* model step -- the trainer's step on precomputed views: ``training_step`` under autocast,
  backward, clipping, optimiser step and ``after_step`` (EMA, queue);
* backbone -- ``method.encoder`` forward + backward alone on the same views (views of one
  size concatenated into one batch): the reference for the method's overhead (heads, losses,
  optimiser, EMA, target networks; MAE encodes a quarter of the patches, so its "overhead"
  is negative);
* end-to-end -- loader -> views -> step as the trainer runs it; ``data_wait`` is the share of
  its time spent waiting for the next batch.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplications and
convolutions, forward + backward) over one step and over one backbone pass. Achieved GFLOP/s
= FLOPs / time, reported as a fraction of this machine's peak, measured as the best of large
square matmuls in the step's dtype (bf16 when autocast runs in bf16, else fp32).

Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA. On the CPU, allocator statistics do
not exist and ``tracemalloc`` does not see torch's allocations, so the process's peak resident
set size (``resource.getrusage().ru_maxrss``) is reported: it includes the dataset, Python and
every earlier peak of the process, and it never decreases.

Sub-modes: :func:`run_scaling` (step cost against batch size), :func:`run_knn_bench` (k-NN
cost against bank size) and the ``compare_torchvision`` option of :func:`run_bench`
(per-sample ``torchvision.transforms.v2`` views in a 2-worker DataLoader on the same images).
"""

from __future__ import annotations

import copy
import json
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from selfsup import build
from selfsup.config import Config, apply_overrides
from selfsup.data import (
    DatasetNotFoundError,
    EpochLoader,
    ImageDataset,
    TensorImageDataset,
    load_dataset,
)
from selfsup.methods import Progress
from selfsup.train.optim import ClipMode, clip_gradients_
from selfsup.train.trainer import autocast, resolve_device, resolve_precision
from selfsup.views import ViewSpec

__all__ = [
    "count_flops",
    "format_knn",
    "format_result",
    "format_scaling",
    "machine_description",
    "matmul_peak_gflops",
    "parse_shape",
    "run_bench",
    "run_knn_bench",
    "run_scaling",
    "torchvision_view",
]

# Issue #6 targets, printed next to the measurements.
TARGET_VIEWS_OVER_STEP = 5.0
TARGET_END_TO_END_OVER_STEP = 0.9
TARGET_METHOD_OVERHEAD = 0.10


# -- machine ----------------------------------------------------------------------------------------
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: torch.device) -> str:
    """One line naming the processor (or GPU), the thread count and the torch version."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{_cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    """Mean seconds per call of ``fn`` over ``steps`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / steps


def matmul_peak_gflops(
    device: torch.device,
    dtype: torch.dtype,
    sizes: Sequence[int] | None = None,
    seconds_per_size: float = 0.2,
) -> float:
    """The best GFLOP/s of square ``n x n`` matmuls (``2 n^3`` FLOPs each) in ``dtype``.

    Each size runs for about ``seconds_per_size`` (at least 2 timed calls after one warm-up)
    and the fastest call counts: the reference "peak" the step is compared with.
    """
    if sizes is None:
        sizes = (4096, 8192) if device.type == "cuda" else (1024, 2048)
    gen = torch.Generator(device=device).manual_seed(0)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, generator=gen).to(dtype)
        b = torch.randn(n, n, device=device, generator=gen).to(dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        torch.matmul(a, b, out=out)
        _sync(device)
        deadline = time.perf_counter() + seconds_per_size
        calls = 0
        while calls < 2 or time.perf_counter() < deadline:
            start = time.perf_counter()
            torch.matmul(a, b, out=out)
            _sync(device)
            best = max(best, 2.0 * n**3 / (time.perf_counter() - start))
            calls += 1
    return best / 1e9


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (forward and backward ops) by ``FlopCounterMode``."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def _rss_mib() -> float:
    """The process's peak resident set size in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


class _PeakMemory:
    """Peak memory over a region: CUDA allocator peak, or the process's peak RSS on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = (
            "CUDA max_memory_allocated"
            if device.type == "cuda"
            else "process peak RSS (ru_maxrss; includes data and Python, never decreases)"
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.start_mib = self._peak()

    def _peak(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return _rss_mib()

    def peak_mib(self) -> float:
        return self._peak()


# -- data -------------------------------------------------------------------------------------------
def parse_shape(text: str) -> tuple[int, int, int]:
    """``"3x32x32"`` -> ``(3, 32, 32)``: channels (1 or 3) x height x width."""
    try:
        c, h, w = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(
            f"synthetic image shape must look like CxHxW, e.g. 3x32x32, got {text!r}"
        ) from None
    if c not in (1, 3) or h < 1 or w < 1:
        raise ValueError(
            f"synthetic images need 1 or 3 channels and a positive size, got {text!r}; "
            "e.g. 3x32x32 (CIFAR-like) or 1x28x28"
        )
    return c, h, w


def _synthetic(shape: tuple[int, int, int], count: int) -> TensorImageDataset:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, *shape), dtype=torch.uint8, generator=gen)
    return TensorImageDataset(images, None, "synthetic", None)


def _bench_dataset(
    cfg: Config, synthetic: tuple[int, int, int] | None, count: int
) -> tuple[ImageDataset, str]:
    """The configured training set, or uniform-noise uint8 images of ``synthetic`` shape.

    The noise images (also the fallback when the configured dataset is not installed) are
    enough for throughput: no op's cost depends on the pixel values.
    """
    if synthetic is not None:
        c, h, w = synthetic
        return _synthetic(synthetic, count), f"synthetic uint8 {c}x{h}x{w}"
    try:
        return build.train_dataset(cfg), cfg.data.dataset
    except (DatasetNotFoundError, FileNotFoundError):
        return _synthetic((1, 28, 28), count), "synthetic uint8 1x28x28"


def _write_image_folder(dataset: ImageDataset, root: Path, count: int) -> ImageDataset:
    """Write the first ``count`` images as lossless PNG files into ``root`` and load them back
    as a folder dataset (decoded by PIL in DataLoader workers, as a real image folder is)."""
    from PIL import Image

    images, _ = dataset.get_batch(torch.arange(min(count, len(dataset))))  # [N, C, H, W] uint8
    _, channels, height, width = images.shape
    if height != width:
        raise ValueError(
            f"--as-files needs square images (folders decode to squares), got {height}x{width}"
        )
    for i, image in enumerate(images):
        array = image.permute(1, 2, 0).numpy()  # [H, W, C]
        pil = Image.fromarray(array[:, :, 0] if channels == 1 else array)
        pil.save(root / f"{i:06d}.png")
    return load_dataset("folder", "train", root=root, image_size=height, channels=channels)


def _batches(loader: EpochLoader) -> Iterator[Tensor]:
    """Endless uint8 batches from ``loader``, epoch after epoch (epochs 1, 2, ...)."""
    epoch = 0
    while True:
        epoch += 1
        for images, _ in loader.iterate(epoch):
            yield images


# -- the step ---------------------------------------------------------------------------------------
class _StepRunner:
    """The trainer's step on one method and optimiser, and the parts the bench times alone."""

    def __init__(
        self, cfg: Config, in_channels: int, device: torch.device, compile_step: bool = False
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.dtype = resolve_precision(cfg.train.precision, device)
        torch.manual_seed(cfg.train.seed)
        method = build.make_method(cfg, in_channels).to(device)
        self.memory_format = (
            torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        )
        self.method = method.to(memory_format=self.memory_format)
        self.method.train()
        self.optimizer, _ = build.make_optimizer(cfg, self.method)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.generator = torch.Generator(device=device).manual_seed(cfg.train.seed)
        self.params = [p for p in self.method.parameters() if p.requires_grad]
        # Momentum rules read the progress; any fixed point of a run costs the same.
        self.progress = Progress(step=0, total_steps=1000, epoch=0, steps_per_epoch=1000)
        # torch.compile'd callables, used when ``compiled`` is True (FLOPs are counted eagerly).
        self.compiled = compile_step
        self._compiled_step: Callable[[list[Tensor]], Any] = self.method.training_step
        self._compiled_encoder: Callable[[Tensor], Tensor] = self.method.encoder
        if compile_step:
            self._compiled_step = torch.compile(self.method.training_step)
            self._compiled_encoder = torch.compile(self.method.encoder)

    def autocast(self) -> torch.autocast:
        return autocast(self.device, self.dtype)

    def views(self, images: Tensor) -> list[Tensor]:
        views = self.method.make_views(images, self.generator)
        return [v.contiguous(memory_format=self.memory_format) for v in views]

    def step(self, views: list[Tensor]) -> None:
        """One optimisation step exactly as ``Trainer._train_epoch`` takes it (no logging)."""
        o = self.cfg.optim
        training_step = self._compiled_step if self.compiled else self.method.training_step
        with self.autocast():
            out = training_step(views)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        if o.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            clip_gradients_(self.params, o.clip_grad, cast(ClipMode, o.clip_grad_mode))
        self.method.before_optimizer_step(self.progress)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.method.after_step(self.progress)

    def backbone_step(self, views: list[Tensor]) -> None:
        """The encoder's forward and backward on every view, nothing else: views of one size
        go through as one concatenated batch (the cheapest way to run the backbone on them)."""
        encoder = self._compiled_encoder if self.compiled else self.method.encoder
        by_size: dict[tuple[int, ...], list[Tensor]] = {}
        for v in views:
            by_size.setdefault(tuple(v.shape[1:]), []).append(v)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = sum(encoder(torch.cat(group)).float().mean() for group in by_size.values())
        assert isinstance(loss, Tensor)
        loss.backward()


# -- torchvision reference --------------------------------------------------------------------------
def torchvision_view(
    spec: ViewSpec, channels: int, mean: Sequence[float], std: Sequence[float]
) -> torch.nn.Module:
    """The per-sample ``torchvision.transforms.v2`` pipeline equivalent to ``spec``.

    Ops in the same order as :class:`~selfsup.views.MultiViewTransform` on uint8 tensors
    (RandomResizedCrop with antialiasing, flip, ColorJitter in RandomApply, grayscale, blur in
    RandomApply, solarize), then conversion to float and normalisation, as a user of
    torchvision would write it. Ops our recipe skips (probability 0, grayscale on 1 channel)
    are left out here too.
    """
    from torchvision.transforms import v2

    ops: list[Any] = [
        v2.RandomResizedCrop(spec.size, scale=spec.crop_scale, ratio=spec.crop_ratio),
        v2.RandomHorizontalFlip(spec.flip_p),
    ]
    if spec.jitter_p > 0 and spec.brightness + spec.contrast + spec.saturation + spec.hue > 0:
        jitter = v2.ColorJitter(spec.brightness, spec.contrast, spec.saturation, spec.hue)
        ops.append(v2.RandomApply([jitter], p=spec.jitter_p))
    if spec.gray_p > 0 and channels == 3:
        ops.append(v2.RandomGrayscale(spec.gray_p))
    if spec.blur_p > 0:
        blur = v2.GaussianBlur(spec.blur_kernel_size, spec.blur_sigma)
        ops.append(v2.RandomApply([blur], p=spec.blur_p))
    if spec.solarize_p > 0:
        ops.append(v2.RandomSolarize(round(255 * spec.solarize_threshold), p=spec.solarize_p))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


class _PerSampleViews(Dataset[list[Tensor]]):
    """Every view of image ``i`` through per-sample torchvision pipelines."""

    def __init__(self, images: Tensor, pipelines: list[Any]) -> None:
        self.images = images  # [N, C, H, W] uint8 on the CPU
        self.pipelines = pipelines

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> list[Tensor]:
        image = self.images[index]
        return [pipeline(image) for pipeline in self.pipelines]


def _compare_torchvision(
    runner: _StepRunner,
    images: Tensor,
    batch: int,
    steps: int,
    warmup: int,
    workers: int,
) -> tuple[float, float]:
    """(ours, torchvision) images/s for the views of the same ``images`` (CPU uint8 tensor).

    Ours: the batched recipe on the device, batch after batch. Torchvision: the per-sample
    pipeline of every view in a DataLoader with ``workers`` worker processes (one thread
    each), collated into batches; timed from the end of the warm-up batches, when the workers
    are busy, to the last batch.
    """
    cfg = runner.cfg
    assert cfg.views.mean is not None and cfg.views.std is not None
    specs = runner.method.view_recipe.specs
    channels = images.shape[1]
    pipelines = [torchvision_view(s, channels, cfg.views.mean, cfg.views.std) for s in specs]
    chunks = list(images.to(runner.device).split(batch))[: warmup + steps]
    for chunk in chunks[:warmup]:
        runner.views(chunk)
    _sync(runner.device)
    start = time.perf_counter()
    for chunk in chunks[warmup:]:
        runner.views(chunk)
    _sync(runner.device)
    ours_s = (time.perf_counter() - start) / steps

    dataset = _PerSampleViews(images, pipelines)
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, drop_last=True)
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    torchvision_s = (time.perf_counter() - start) / steps
    del it  # shuts the workers down
    return batch / ours_s, batch / torchvision_s


# -- the main benchmark -----------------------------------------------------------------------------
def run_bench(
    cfg: Config,
    steps: int = 10,
    warmup: int = 2,
    write: str | None = None,
    command: str = "selfsup bench",
    *,
    synthetic: tuple[int, int, int] | None = None,
    as_files: bool = False,
    compare_torchvision: bool = False,
    compile_step: bool = False,
    json_path: str | None = None,
    peak_sizes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Measure, print and return one configuration's throughput, FLOPs and memory.

    Args:
        cfg: a validated config (method, backbone, batch size, views, precision, device).
        steps: timed calls per measurement; warmup: untimed calls first.
        write: append the markdown table to this file, under ``command``.
        synthetic: ``(C, H, W)`` of uniform-noise images instead of the configured dataset.
        as_files: write the images as PNG files to a temporary folder and read them back
            through the decoding DataLoader with ``data.num_workers`` workers.
        compare_torchvision: also time per-sample ``torchvision.transforms.v2`` views in a
            2-worker DataLoader on the same images, and report the ratio.
        compile_step: ``torch.compile`` the training step and the encoder (the first call,
            which compiles, is timed separately).
        json_path: append the result as one JSON line to this file.
        peak_sizes: matmul sizes for the peak measurement (default: 1024, 2048 on the CPU).
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    device = resolve_device(cfg.train.device)
    batch = cfg.train.batch_size
    needed = batch * (warmup + steps + 1)
    dataset, data_name = _bench_dataset(cfg, synthetic, max(needed, 4096))
    build.resolve_normalization(cfg, dataset)
    in_channels = build.input_channels(cfg, dataset)

    with tempfile.TemporaryDirectory(prefix="selfsup-bench-") as tmp:
        source = dataset
        if as_files:
            dataset = _write_image_folder(source, Path(tmp), needed)
            data_name = f"{data_name} as {len(dataset)} PNG files"
        memory = _PeakMemory(device)
        runner = _StepRunner(cfg, in_channels, device, compile_step)
        workers = cfg.data.num_workers if not isinstance(dataset, TensorImageDataset) else 0
        loader = EpochLoader(
            dataset, batch, seed=cfg.train.seed, num_workers=workers, device=device
        )

        images = next(_batches(loader))
        fixed_views = runner.views(images)
        runner.compiled = False
        step_flops = count_flops(lambda: runner.step(fixed_views))
        backbone_flops = count_flops(lambda: runner.backbone_step(fixed_views))
        runner.compiled = compile_step
        compile_s = None
        if compile_step:
            start = time.perf_counter()
            runner.step(fixed_views)
            runner.backbone_step(fixed_views)
            _sync(device)
            compile_s = time.perf_counter() - start

        t_views = _time(lambda: runner.views(images), steps, warmup, device)
        t_step = _time(lambda: runner.step(fixed_views), steps, warmup, device)
        t_backbone = _time(lambda: runner.backbone_step(fixed_views), steps, warmup, device)
        stream = _batches(loader)
        t_loader = _time(lambda: next(stream), steps, warmup, device)

        stream = _batches(loader)
        waited = 0.0

        def full_step() -> None:
            nonlocal waited
            start = time.perf_counter()
            imgs = next(stream)
            waited += time.perf_counter() - start
            runner.step(runner.views(imgs))

        for _ in range(warmup):
            full_step()
        _sync(device)
        waited = 0.0
        t_full = _time(full_step, steps, 0, device)
        data_wait = waited / (t_full * steps)
        peak_mib = memory.peak_mib()

        tv: tuple[float, float] | None = None
        if compare_torchvision:
            # Exactly warmup + steps + 1 batches, repeating a small dataset if needed.
            cpu_images, _ = source.get_batch(torch.arange(needed) % len(source))
            tv = _compare_torchvision(runner, cpu_images, batch, steps, warmup, workers=2)

    peak_dtype = runner.dtype or torch.float32
    peak = matmul_peak_gflops(device, peak_dtype, peak_sizes)
    step_gflops = step_flops / t_step / 1e9
    result: dict[str, Any] = {
        "method": cfg.method,
        "backbone": f"{cfg.backbone.name} x{cfg.backbone.width}",
        "batch_size": batch,
        "view_size": cfg.views.size,
        "num_views": len(fixed_views),
        "data": data_name,
        "workers": workers,
        "device": str(device),
        "precision": str(runner.dtype).replace("torch.", "") if runner.dtype else "fp32",
        "compiled": compile_step,
        "compile_s": compile_s,
        "machine": machine_description(device),
        "steps": steps,
        "warmup": warmup,
        "views_img_s": batch / t_views,
        "loader_img_s": batch / t_loader,
        "step_img_s": batch / t_step,
        "backbone_img_s": batch / t_backbone,
        "end_to_end_img_s": batch / t_full,
        "views_over_step": t_step / t_views,
        "end_to_end_over_step": t_step / t_full,
        "method_overhead": t_step / t_backbone - 1,
        "data_wait": data_wait,
        "step_gflop": step_flops / 1e9,
        "backbone_gflop": backbone_flops / 1e9,
        "step_gflops": step_gflops,
        "backbone_gflops": backbone_flops / t_backbone / 1e9,
        "peak_dtype": str(peak_dtype).replace("torch.", ""),
        "matmul_peak_gflops": peak,
        "peak_fraction": step_gflops / peak,
        "peak_memory_mib": peak_mib,
        "memory_at_start_mib": memory.start_mib,
        "memory_kind": memory.kind,
    }
    if tv is not None:
        result["ours_views_img_s"], result["torchvision_views_img_s"] = tv
        result["views_over_torchvision"] = tv[0] / tv[1]
    _report(format_result(result), result, write, json_path, command)
    return result


def _report(
    table: str, result: Any, write: str | None, json_path: str | None, command: str
) -> None:
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
    """The markdown block of one :func:`run_bench` result."""
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


# -- scaling with the batch size --------------------------------------------------------------------
def _quadratic_loss_probe(
    cfg: Config, batch: int, device: torch.device
) -> tuple[str, Callable[[], None]] | None:
    """The method's loss whose cost grows with the square of the batch, on random embeddings
    (forward + backward): NT-Xent (SimCLR, ``[2B, 2B]`` logits) or MoCo v3's contrastive loss
    (``[B, B]`` logits, both directions). None for losses linear in the batch."""
    from selfsup.nn.losses import moco_v3_loss, nt_xent_loss

    gen = torch.Generator(device=device).manual_seed(0)
    if cfg.method == "simclr":
        dim, tau = cfg.simclr.proj_out_dim, cfg.simclr.temperature
        z = torch.randn(2, batch, dim, device=device, generator=gen).requires_grad_()

        def simclr_loss() -> None:
            nt_xent_loss(z[0], z[1], tau).backward()

        return "NT-Xent", simclr_loss
    if cfg.method == "mocov3":
        dim, tau = cfg.mocov3.proj_out_dim, cfg.mocov3.temperature
        q = torch.randn(2, batch, dim, device=device, generator=gen).requires_grad_()
        k = torch.randn(2, batch, dim, device=device, generator=gen)

        def mocov3_loss() -> None:
            (moco_v3_loss(q[0], k[1], tau) + moco_v3_loss(q[1], k[0], tau)).backward()

        return "MoCo v3 ctr", mocov3_loss
    return None


def run_scaling(
    cfg: Config,
    batch_sizes: Sequence[int],
    steps: int = 5,
    warmup: int = 2,
    write: str | None = None,
    command: str = "selfsup bench --scaling",
    *,
    synthetic: tuple[int, int, int] | None = None,
    json_path: str | None = None,
) -> list[dict[str, Any]]:
    """Step cost against the global batch size: model step, backbone pass, the difference, FLOPs,
    and the quadratic loss alone (NT-Xent for SimCLR, MoCo v3's loss), one row per batch size."""
    if not batch_sizes:
        raise ValueError("--scaling needs at least one batch size, e.g. --scaling 64,128,256")
    device = resolve_device(cfg.train.device)
    dataset, data_name = _bench_dataset(cfg, synthetic, max(max(batch_sizes), 4096))
    build.resolve_normalization(cfg, dataset)
    in_channels = build.input_channels(cfg, dataset)
    for batch in batch_sizes:
        if batch > len(dataset):
            raise ValueError(f"batch size {batch} exceeds the {len(dataset)} images available")
    rows = [
        _scaling_row(cfg, batch, dataset, in_channels, device, steps, warmup)
        for batch in batch_sizes
    ]
    dtype = resolve_precision(cfg.train.precision, device)
    header = (
        f"{cfg.method}, {cfg.backbone.name} x{cfg.backbone.width}, views {cfg.views.size} px, "
        f"data {data_name}, {device} ({str(dtype or 'fp32').replace('torch.', '')}); "
        f"{machine_description(device)}"
    )
    _report(format_scaling(rows, header), rows, write, json_path, command)
    return rows


def _scaling_row(
    cfg: Config,
    batch: int,
    dataset: ImageDataset,
    in_channels: int,
    device: torch.device,
    steps: int,
    warmup: int,
) -> dict[str, Any]:
    """One row of :func:`run_scaling`: a fresh method and optimiser at global batch ``batch``."""
    cfg_b = apply_overrides(copy.deepcopy(cfg), [f"train.batch_size={batch}"]).validate()
    runner = _StepRunner(cfg_b, in_channels, device)
    images, _ = dataset.get_batch(torch.arange(batch))
    views = runner.views(images.to(device))
    step_flops = count_flops(lambda: runner.step(views))
    backbone_flops = count_flops(lambda: runner.backbone_step(views))
    t_step = _time(lambda: runner.step(views), steps, warmup, device)
    t_backbone = _time(lambda: runner.backbone_step(views), steps, warmup, device)
    row: dict[str, Any] = {
        "batch_size": batch,
        "step_ms": 1000 * t_step,
        "step_img_s": batch / t_step,
        "backbone_ms": 1000 * t_backbone,
        "beyond_backbone_ms": 1000 * (t_step - t_backbone),
        "step_gflop": step_flops / 1e9,
        "beyond_backbone_gflop": (step_flops - backbone_flops) / 1e9,
    }
    probe = _quadratic_loss_probe(cfg_b, batch, device)
    if probe is not None:
        name, fn = probe
        with runner.autocast():
            row["loss_name"] = name
            row["loss_ms"] = 1000 * _time(fn, steps, warmup, device)
    return row


def format_scaling(rows: list[dict[str, Any]], header: str = "") -> str:
    """The markdown table of :func:`run_scaling` rows."""
    loss_name = next((r["loss_name"] for r in rows if "loss_name" in r), None)
    loss_col = f" {loss_name} fwd+bwd ms |" if loss_name else ""
    lines = [
        header,
        "",
        "| batch | model step ms | images/s | backbone fwd+bwd ms | step - backbone ms | "
        f"step GFLOP | GFLOP beyond the backbone pass |{loss_col}",
        "|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if loss_name else ""),
    ]
    for r in rows:
        loss = f" {r['loss_ms']:.2f} |" if loss_name else ""
        lines.append(
            f"| {r['batch_size']} | {r['step_ms']:.1f} | {r['step_img_s']:.0f} | "
            f"{r['backbone_ms']:.1f} | {r['beyond_backbone_ms']:.1f} | {r['step_gflop']:.2f} | "
            f"{r['beyond_backbone_gflop']:.3f} |{loss}"
        )
    return "\n".join(lines)


# -- k-NN -------------------------------------------------------------------------------------------
def run_knn_bench(
    bank_sizes: Sequence[int],
    queries: int = 10000,
    dim: int = 128,
    num_classes: int = 10,
    k: int = 20,
    chunk_size: int = 1024,
    bank_chunk_size: int = 16384,
    device: str = "cpu",
    write: str | None = None,
    command: str = "selfsup bench --knn",
    json_path: str | None = None,
) -> list[dict[str, Any]]:
    """Time :func:`selfsup.eval.knn.knn_predict` on random features for each bank size.

    Reports seconds, queries/s, the bank's own size, the bound on the similarity block
    (``chunk_size x bank_chunk_size`` float32) and the peak memory of the call (CUDA allocator
    peak, or the growth of the process's peak RSS on the CPU, the bank being allocated first).
    """
    from selfsup.eval.knn import knn_predict

    if not bank_sizes or min(bank_sizes) < 1 or queries < 1 or dim < 1:
        raise ValueError(
            f"need bank sizes >= 1, queries >= 1 and dim >= 1, got banks {list(bank_sizes)}, "
            f"queries {queries}, dim {dim}"
        )
    target = resolve_device(device)
    gen = torch.Generator(device=target).manual_seed(0)
    rows: list[dict[str, Any]] = []
    for n in bank_sizes:
        bank = torch.randn(n, dim, device=target, generator=gen)
        labels = torch.randint(0, num_classes, (n,), device=target, generator=gen)
        query = torch.randn(queries, dim, device=target, generator=gen)
        knn_predict(bank[:100], labels[:100], query[:10], num_classes, k)  # warm-up
        _sync(target)
        memory = _PeakMemory(target)
        before = (
            memory.start_mib if target.type != "cuda" else torch.cuda.memory_allocated() / 2**20
        )
        start = time.perf_counter()
        knn_predict(bank, labels, query, num_classes, k, 0.07, chunk_size, bank_chunk_size)
        _sync(target)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "bank": n,
                "queries": queries,
                "dim": dim,
                "seconds": seconds,
                "queries_per_s": queries / seconds,
                "bank_mib": n * dim * 4 / 2**20,
                "block_bound_mib": min(chunk_size, queries) * min(bank_chunk_size, n) * 4 / 2**20,
                "full_matrix_mib": n * queries * 4 / 2**20,
                "call_peak_mib": max(0.0, memory.peak_mib() - before),
                "memory_kind": memory.kind,
            }
        )
        del bank, labels, query
    header = (
        f"k-NN (k={k}, cosine, {num_classes} classes), {queries} queries of dim {dim}, query "
        f"chunk {chunk_size}, bank chunk {bank_chunk_size}, {target}; {machine_description(target)}"
    )
    _report(format_knn(rows, header), rows, write, json_path, command)
    return rows


def format_knn(rows: list[dict[str, Any]], header: str = "") -> str:
    """The markdown table of :func:`run_knn_bench` rows."""
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
