"""Data-parallel training under ``torchrun``: one process per device (or per CPU share), each
integrating its slice of every batch; DistributedDataParallel averages the gradients.

``torchrun --nproc_per_node N -m memspice train ...`` starts the processes; the environment it
sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``) is all this module
reads. Without it, training runs in one process as usual. The backend is NCCL on CUDA and gloo
on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place: ``rank`` of ``world`` processes, on ``device``."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        """The process that writes files, shows progress and evaluates."""
        return self.rank == 0

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This process's share of a batch's sample indices (every ``world``-th from ``rank``)."""
        return index[self.rank :: self.world]

    def sum(self, values: list[float]) -> list[float]:
        """``values`` summed over the processes (float64 on the CPU: gloo and NCCL both take it)."""
        if self.world == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.startswith("cuda")
                              else "cpu")
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def join(device: str) -> ProcessGroup:
    """The process group ``torchrun`` describes in the environment (joined here), or a single
    process on ``device``. Under ``torchrun`` a CUDA ``device`` becomes ``cuda:LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ProcessGroup(device=device)
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), device)


def leave(group: ProcessGroup) -> None:
    """Leave the process group (after the last collective call)."""
    if group.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
