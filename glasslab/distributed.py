"""Data-parallel training on several processes (GPUs or nodes) with ``torch.distributed``.

``torchrun --nproc-per-node W $(which glasslab) train config.toml`` starts W copies of
``glasslab train``; each finds its rank here (:func:`context`) and processes 1/W of every
optimiser step's snapshots. The arithmetic is that of one process splitting each batch into W
micro-batches (``TrainConfig.micro_batches = W``) and summing their gradients, so a W-process
run equals that single-process run up to float summation order (``tests/test_distributed.py``):

- the loss of a step is the summed squared error of all its snapshots over their total count, so
  the gradients of the ranks add up to the single-process gradient: one ``all_reduce`` of the
  flattened gradients after the backward passes (what ``DistributedDataParallel`` does in
  buckets; done by hand here because DDP would also broadcast rank 0's batch-norm statistics
  over the others', which is not the single-process arithmetic);
- batch norms normalise with the statistics of their own micro-batch, as in one process, and their
  running statistics are merged after each step into what the sequence of micro-batches would have
  left (:meth:`Distributed.merge_running_stats`);
- every rank draws the augmentation of every snapshot of the step, in order, and uses its own.

Dropout masks come from each rank's own generator, so runs with active dropout are equal in
distribution, not in numbers. Only rank 0 writes files. Backend: NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel run (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Whether this process writes files and reports progress."""
        return self.rank == 0

    def share(self, items: list) -> list:
        """This rank's contiguous part of ``items`` (whose length is a multiple of the world size)."""
        size = len(items) // self.world
        return items[self.rank * size:(self.rank + 1) * size]

    def sum(self, value: float) -> float:
        """The sum of ``value`` over all ranks."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return float(t.item())

    def sum_gradients(self, params) -> None:
        """Replace each parameter's gradient by its sum over the ranks (one flattened all-reduce)."""
        if not self.active:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
            offset += g.numel()

    def merge_running_stats(self, model: nn.Module, before: list[torch.Tensor], micro_per_rank: int) -> None:
        """Make every batch norm's running statistics those of one process that had seen all
        ranks' micro-batches in rank order.

        A rolling average r ← (1 − m) r + m s is linear: after rank j's k = ``micro_per_rank``
        updates from the common r₀ its statistics are aᵏ r₀ + c_j with a = 1 − m; one process
        running the ranks one after another ends at a^{kW} r₀ + Σ_j a^{k(W−1−j)} c_j.
        ``before`` holds r₀ (:func:`running_stats` before the step).
        """
        if not self.active:
            return
        for (momentum, buffer), r0 in zip(_stat_buffers(model), before):
            a = (1.0 - momentum) ** micro_per_rank
            own = (buffer - a * r0).contiguous()
            gathered = [torch.empty_like(own) for _ in range(self.world)]
            torch.distributed.all_gather(gathered, own)
            merged = a**self.world * r0
            for j, c in enumerate(gathered):
                merged = merged + a ** (self.world - 1 - j) * c
            buffer.copy_(merged)

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


def _stat_buffers(model: nn.Module) -> list[tuple[float, torch.Tensor]]:
    """(momentum, buffer) of every running mean and variance of the batch norms of ``model``."""
    from e3nn import nn as e3nn_nn

    out = []
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, e3nn_nn.BatchNorm)) and m.running_mean is not None:
            if m.momentum is None:
                raise ValueError(f"{type(m).__name__} with momentum=None (a cumulative average) cannot be merged "
                                 "across ranks; give it a momentum")
            out += [(m.momentum, m.running_mean), (m.momentum, m.running_var)]
    return out


def running_stats(model: nn.Module) -> list[torch.Tensor]:
    """Copies of the running means and variances of every batch norm of ``model``."""
    return [buffer.clone() for _, buffer in _stat_buffers(model)]


def context(device: torch.device | None = None) -> tuple[Distributed, torch.device | None]:
    """This process's :class:`Distributed`, joining the process group when launched by torchrun
    (``WORLD_SIZE`` > 1), and the device it should use: ``cuda:<LOCAL_RANK>`` on GPUs, else ``device``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(), device
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda") else "gloo"
        torch.distributed.init_process_group(backend)
    if torch.distributed.get_backend() == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return Distributed(torch.distributed.get_rank(), torch.distributed.get_world_size()), device
