"""``selfsup bench``: what one training step costs, and where the time goes.

Everything is measured in one process, on the same data and configuration as a real run
(images/s counts images, each of which yields all of the method's views), through the
trainer's own :class:`~selfsup.train.step.TrainStep`:

* views -- ``TrainStep.views`` alone on a uint8 batch already on the device;
* loader -- the data loader alone (an in-memory gather, or files decoded by DataLoader workers);
* model step -- exactly ``TrainStep.update`` on precomputed views (lr/weight decay of the step,
  ``training_step`` under autocast, backward, clipping, the method's hooks, optimiser step),
  walking through the global steps of a run of ``train.epochs`` epochs;
* backbone -- ``method.encoder`` forward + backward alone on the same views (views of one
  size concatenated into one batch): the reference for the method's overhead (heads, losses,
  optimiser, EMA, target networks; MAE encodes a quarter of the patches, so its "overhead"
  is negative);
* end-to-end -- loader -> ``TrainStep`` views + update, as the trainer runs it; ``data_wait``
  is the share of its time spent waiting for the next batch.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplications and
convolutions, forward + backward) over one step and over one backbone pass. Achieved GFLOP/s
= FLOPs / time, reported as a fraction of this machine's peak, measured as the best of large
square matmuls in the step's dtype (bf16 when autocast runs in bf16, else fp32).

Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA. On the CPU, allocator statistics do
not exist and ``tracemalloc`` does not see torch's allocations, so the process's peak resident
set size (``resource.getrusage().ru_maxrss``) is reported: it includes the dataset, Python and
every earlier peak of the process, and it never decreases.

Sub-modes: :func:`run_scaling` (step cost against batch size), :func:`run_knn_bench` (k-NN
cost against bank size), the ``compare_torchvision`` option of :func:`run_bench`
(per-sample ``torchvision.transforms.v2`` views in a 2-worker DataLoader on the same images)
and :func:`run_distributed_bench` (bytes each collective sends per step with 2 processes, and
images/s under torchrun against one plain process).
"""

from selfsup.bench.data import parse_shape, write_image_folder
from selfsup.bench.distributed_bench import measure_comm, method_config, run_distributed_bench
from selfsup.bench.distributed_throughput import global_images_per_s, measure_throughput
from selfsup.bench.knn import run_knn_bench
from selfsup.bench.machine import count_flops, machine_description, matmul_peak_gflops
from selfsup.bench.report import (
    format_comm,
    format_knn,
    format_result,
    format_scaling,
    format_throughput,
)
from selfsup.bench.scaling import run_scaling
from selfsup.bench.step_bench import run_bench
from selfsup.bench.torchvision_ref import torchvision_view

__all__ = [
    "count_flops",
    "format_comm",
    "format_knn",
    "format_result",
    "format_scaling",
    "format_throughput",
    "global_images_per_s",
    "machine_description",
    "matmul_peak_gflops",
    "measure_comm",
    "measure_throughput",
    "method_config",
    "parse_shape",
    "run_bench",
    "run_distributed_bench",
    "run_knn_bench",
    "run_scaling",
    "torchvision_view",
    "write_image_folder",
]
