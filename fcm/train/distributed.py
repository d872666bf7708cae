"""Data-parallel training with ``torch.distributed``, when launched by ``torchrun``.

A process started by ``torchrun`` (environment ``RANK`` set, or ``WORLD_SIZE`` > 1) joins the process group
(``nccl`` when CUDA is available, else ``gloo``), trains its shard of every batch (items ``rank::world_size`` of the
batch all ranks draw alike from the shared seed), and ``DistributedDataParallel`` averages the wrapper's gradients.
Only rank 0 writes logs and checkpoints. A plain process (``fcm train``) uses none of this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run."""

    rank: int
    world_size: int
    device: torch.device
    active: bool  # a process group is in use
    owns_group: bool  # this module created it (and destroys it at the end)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup() -> Distributed:
    """Join the process group when launched by ``torchrun``; pick the device (CUDA when available, else CPU)."""
    if not launched_by_torchrun():
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return Distributed(0, 1, device, active=False, owns_group=False)
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return Distributed(dist.get_rank(), dist.get_world_size(), device, active=True, owns_group=owns)


def teardown(where: Distributed) -> None:
    if where.owns_group:
        import torch.distributed as dist

        dist.destroy_process_group()
