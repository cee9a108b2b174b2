"""Multi-process training (torchrun): process group, sharded samplers, gathers, CPU SyncBatchNorm."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in the job (rank 0 of 1 for a plain run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and logs."""
        return self.rank == 0


def env_from_environ() -> DistEnv:
    """Read RANK / WORLD_SIZE / LOCAL_RANK as set by torchrun (absent: a single process)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise RuntimeError(f"malformed torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from exc
    if not 0 <= rank < world:
        raise RuntimeError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return DistEnv(rank=rank, world_size=world, local_rank=local)


def init_process_group(env: DistEnv, device: torch.device, backend: str = "auto",
                       timeout_s: float = 1800.0) -> None:
    """Join the job's default group: gloo on CPU, nccl on CUDA, unless `backend` says otherwise."""
    if not env.distributed or dist.is_initialized():
        return
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise RuntimeError(f"{key} is not set: launch multi-process runs with torchrun, e.g. "
                               f"`torchrun --nproc_per_node 2 main.py --config ...`")
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size,
                            timeout=timedelta(seconds=timeout_s),
                            device_id=device if device.type == "cuda" else None)


def shutdown() -> None:
    """Leave the process group (no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    """Wait for every process (no-op for a single process)."""
    if env.distributed:
        dist.barrier()


def any_true(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """True if `flag` is set on any process (so every process takes the same branch)."""
    if not env.distributed:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """Every process's `obj`, in rank order (a one-element list for a single process)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    """Rank 0's `obj` on every process."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_module_state(module: nn.Module, env: DistEnv) -> None:
    """Copy rank 0's parameters and buffers (BatchNorm statistics too) into every process's module.

    Without it each process evaluates with its own BatchNorm running statistics, which differ
    after the last training step, while only rank 0's are saved.
    """
    if not env.distributed:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


class ShardedSampler(torch.utils.data.Sampler[int]):
    """Index order for one process: seeded per epoch, sharded by rank, resumable mid-epoch.

    Training (`drop_last=True`) cuts the order to a multiple of the world size so every process
    runs the same number of steps. Evaluation (`drop_last=False`) pads nothing: each sample is
    seen by exactly one process, the shards may differ by one sample.
    """

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside num_replicas {num_replicas}")
        self.size = int(size)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (the shuffle order is a function of seed + epoch only)."""
        self.epoch = int(epoch)

    def set_start(self, start: int) -> None:
        """Skip the first `start` indices of this process's shard (mid-epoch resume)."""
        self.start = int(start)

    def shard(self) -> list[int]:
        """This process's full index list for the current epoch (ignoring `start`)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        if self.drop_last:
            order = order[: (self.size // self.num_replicas) * self.num_replicas]
        return order[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.start:])

    def __len__(self) -> int:
        if self.drop_last:
            n = self.size // self.num_replicas
        else:
            n = math.ceil(max(self.size - self.rank, 0) / self.num_replicas)
        return max(n - self.start, 0)


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose backward sums the gradients too (d(sum_r x_r)/dx_r = 1 everywhere)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics span all processes, on any device (CPU/gloo too).

    torch.nn.SyncBatchNorm only runs on GPUs; this one sums the statistics with a differentiable
    all_reduce, so gradients flow across processes exactly as in one big batch.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 process_group: Any = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        sync = self.training and dist.is_available() and dist.is_initialized() \
            and dist.get_world_size(self.process_group) > 1
        if not sync:
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = torch.tensor([xf.numel() / xf.shape[1]], device=x.device, dtype=torch.float32)
        stats = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]), self.process_group)
        n = stats[-1].detach()
        mean = stats[:-1] / n
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims), self.process_group) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), n)
        return out.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        """The same running-average update as nn.BatchNorm (unbiased variance)."""
        self.num_batches_tracked.add_(1)
        momentum = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
        unbiased = var * n / torch.clamp(n - 1, min=1)
        self.running_mean.mul_(1 - momentum).add_(mean.to(self.running_mean.dtype), alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)


def convert_sync_batchnorm(model: nn.Module, device: torch.device, process_group: Any = None) -> nn.Module:
    """Swap every BatchNorm for its synchronised form: torch's on GPU, GlooSyncBatchNorm elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group)
    return _convert_to_gloo_sync(model, process_group)


def _convert_to_gloo_sync(module: nn.Module, process_group: Any) -> nn.Module:
    """Recursive swap keeping parameters and buffers (and their identity)."""
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
            module, (GlooSyncBatchNorm, nn.SyncBatchNorm)):
        out = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats, process_group)
        if module.affine:
            out.weight = module.weight
            out.bias = module.bias
        if module.track_running_stats:
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_to_gloo_sync(child, process_group))
    return out


def new_sync_group(env: DistEnv, device: torch.device) -> Any:
    """A separate gloo group for CPU SyncBatchNorm, so its collectives never interleave with DDP's."""
    if not env.distributed or device.type == "cuda":
        return None
    return dist.new_group(backend="gloo")
