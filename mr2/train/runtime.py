"""Where and how a run executes: processes (torch.distributed), devices, mixed precision, the
optimiser and its schedule, and the random streams that make a resumed run redraw the same batches.

Multi-GPU: launch with ``torchrun --nproc_per_node=N -m mr2 train ...``; each rank takes every N-th
index of a shared permutation (``mr2.data.batch_indices``), the model is wrapped in DDP and the losses
all-reduce their class statistics themselves. ``Dist`` carries the collectives the loop needs beyond
DDP's (evaluation counts, buffers, the log's numbers); each is a no-op in one process.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mr2.train.config import TrainConfig
from mr2_core.checks import bad

__all__ = [
    "Dist",
    "init_distributed",
    "is_main_process",
    "resolve_device",
    "amp_dtype",
    "lr_at",
    "epoch_generator",
    "make_optimizer",
    "rng_state",
    "set_rng_state",
    "environment",
]


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """``t`` summed (``op="sum"``) or its elementwise maximum (``"max"``) over the ranks, in place
        and returned; every rank must call it with the same shape. A no-op in one process."""
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return t

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        """``t`` replaced, in place, by rank ``src``'s values; a no-op in one process."""
        if self.world_size > 1:
            import torch.distributed as dist

            dist.broadcast(t, src=src)
        return t

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` (picklable) on every rank; ``obj`` itself in one process."""
        if self.world_size == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()


def is_main_process() -> bool:
    """True on rank 0 of a torch.distributed job (or when there is none): the one process that prints
    and writes. Reads the process group once initialised, else torchrun's ``RANK``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def init_distributed(device_pref: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(0, 1, 0)
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and device_pref != "cpu"
        if use_nccl:  # NCCL's object collectives use the current device: one GPU per rank
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank)


def resolve_device(pref: str, dist_info: Dist) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise bad("device", pref, "'cpu' or 'auto' (no CUDA device is available here)")
        if dist_info.world_size > 1:
            return torch.device("cuda", dist_info.local_rank)
    try:
        return torch.device(pref)
    except RuntimeError:
        raise bad("device", pref, "auto, cpu, cuda or cuda:N") from None


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def lr_at(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Learning rate at a global step: linear warm-up, then cosine to 0, constant, or steps
    (``lr_steps``: lr * multiplier from each fraction of the total steps on)."""
    warm = cfg.warmup_epochs * steps_per_epoch
    total = cfg.epochs * steps_per_epoch
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        factor = 1.0
        for fraction, multiplier in cfg.lr_steps:
            if step >= fraction * total:
                factor = multiplier
        return cfg.lr * factor
    progress = (step - warm) / max(1.0, total - warm)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    # independent streams per (seed, epoch, purpose): resuming at any epoch redraws the same batches
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        nesterov = cfg.momentum > 0 if cfg.nesterov is None else cfg.nesterov
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=nesterov, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)


def rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(device: torch.device, dist_info: Dist) -> dict[str, Any]:
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # float results depend on the CPU's vector instructions and the thread count (reductions in
        # another order): both are recorded so that a run can be reproduced bit for bit
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": str(device),
        "world_size": dist_info.world_size,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
