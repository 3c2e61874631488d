"""Data-parallel training over processes that torch's launcher (torchrun / `torch.distributed.run`) started.

Each rank trains the same model on a disjoint shard of every global batch; after each backward the ranks'
gradients are all-reduced, each weighted by its share of the global batch, so every rank takes the step
single-process training with the global batch would take (an uneven last batch included). Epoch metrics are
summed over the ranks before they are read, so every rank sees the same logs and early stopping decides the
same; a stop is agreed at each epoch end all the same. Only rank 0 writes (the caller gives the writer to it).

Why not `torch.nn.parallel.DistributedDataParallel`: its average over ranks is wrong for an uneven last
batch, and its forward broadcasts buffers, so rank 0 evaluating the test split alone through it would hang.
The all-reduce here is the one DDP does, in one flat bucket after the backward (for the small models trainwise
trains, one collective per step is cheaper than DDP's overlap of many).
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import torch
import torch.distributed as dist

from ..config import RunConfig
from ..data import PreparedData
from ..errors import Terminated, TrainwiseError
from .metrics import MemberMetrics, MetricAccumulator
from .trainer import Callback, Trainer

__all__ = ["check_distributed", "World", "world_from_env", "join", "leave", "ShardedBatches", "shard_rows", "DistributedTraining",
           "ReducedMetrics", "launch"]


@dataclass(frozen=True)
class World:
    """This process's place in a job: ``rank`` of ``size`` processes, ``local_rank`` on its machine."""

    rank: int
    size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def world_from_env() -> World | None:
    """The job torchrun started this process in (its RANK/WORLD_SIZE/LOCAL_RANK), or None for one process."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return None
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def join(world: World, device: torch.device, *, nproc: int = 1) -> torch.device:
    """Join the job's process group (gloo on CPU, nccl on CUDA) and return this rank's device (``cuda:LOCAL_RANK``
    on CUDA). ``nproc`` (the config's) must be 1 (the job's size decides) or the job's size."""
    if nproc not in (1, world.size):
        raise TrainwiseError(f"--nproc {nproc} was given, but torchrun started {world.size} processes (WORLD_SIZE={world.size})",
                             hint="leave --nproc out when you start trainwise with torchrun yourself")
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # a rank that is gone ends the others' collectives with an error within this time, not a hang
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=5))
    return device


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard_rows(n: int, world: World) -> torch.Tensor:
    """This rank's contiguous share of ``n`` ordered rows (validation: every row on exactly one rank)."""
    return torch.tensor_split(torch.arange(n), world.size)[world.rank]


class ShardedBatches:
    """This rank's part of every global batch of ``batches`` (a `TensorBatches`): each epoch draws the same
    permutation on every rank (same generator, same seed), cuts it into global batches of ``size`` × the
    per-rank batch size, and this rank takes its piece of each. A last global batch with fewer rows than ranks
    is left out (at most ``size - 1`` rows an epoch, different ones each epoch).
    ``share``: this rank's fraction of the rows of the batches yielded since `take_share` was last called."""

    def __init__(self, batches: Any, world: World):
        self.batches, self.world = batches, world
        self.global_batch = batches.batch_size * world.size
        self._local = self._global = 0

    def __len__(self) -> int:
        n, g = self.batches.num_samples, self.global_batch
        return n // g + (n % g >= self.world.size)

    @property
    def num_samples(self) -> int:
        return self.batches.num_samples

    def head(self, n: int = 2) -> torch.Tensor:
        return self.batches.head(n)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        b = self.batches
        X, y, n, g = b.X, b.y, len(b.y), self.global_batch
        perm = b.permutation() if b.shuffle else torch.arange(n, device=X.device)
        for i in range(0, n, g):
            whole = perm[i:i + g]
            if len(whole) < self.world.size:
                break
            idx = torch.tensor_split(whole, self.world.size)[self.world.rank]
            self._local += len(idx)
            self._global += len(whole)
            yield X.index_select(0, idx), y.index_select(0, idx)

    def take_share(self) -> float:
        share = self._local / self._global if self._global else 0.0
        self._local = self._global = 0
        return share

    def state_dict(self) -> dict:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state)


class ReducedMetrics(MetricAccumulator):
    """A `MetricAccumulator` whose sums are added up over all ranks (one collective) before they are read; the
    outputs kept for ``--metrics`` (F1, AUROC, ...) are gathered from all ranks, so every rank computes them on the
    whole split (these metrics do not depend on the order of the rows)."""

    def compute(self, prefix: str) -> dict[str, float]:
        if self.extra_metrics:  # every rank takes part, also one whose validation shard is empty
            self.outputs = _gather_outputs(self.outputs, self.device)
        names = ["loss_sum", "correct"] + (["abs_err", "sq_err", "y_sum", "y_sq"] if self.kind == "regression" else [])
        parts = [getattr(self, k) for k in names] + [s for s, _ in self.extra.values()]
        counts = [self.count] + [c for _, c in self.extra.values()]
        flat = torch.cat([p.reshape(-1) for p in parts] + [torch.tensor(counts, dtype=torch.float64, device=self.device)])
        _all_reduce(flat)
        reduced = list(flat.split([p.numel() for p in parts] + [len(counts)]))  # back into each sum's own shape
        for k, v, p in zip(names, reduced, parts):
            setattr(self, k, v.view_as(p))
        for slot, v in zip(self.extra.values(), reduced[len(names):len(parts)]):
            slot[0] = v.view_as(slot[0])
        totals = reduced[-1].tolist()
        self.count = int(totals[0])
        for slot, c in zip(self.extra.values(), totals[1:]):
            slot[1] = int(c)
        return super().compute(prefix)


class ReducedMemberMetrics(MemberMetrics, ReducedMetrics):
    """`ReducedMetrics` for an efficient ensemble's training outputs (scored combined, as `MemberMetrics`)."""


class DistributedTraining(Callback):
    """What makes one `Trainer` per rank train as one: at the start rank 0's weights go to every rank and epoch
    metrics are summed over ranks (`ReducedMetrics`); after each backward the gradients are all-reduced, weighted
    by each rank's share of the global batch; batch-norm statistics are rank 0's at each epoch end; a stop is
    agreed at each epoch end (a non-finite loss on any rank makes the summed epoch loss non-finite on all, so the
    doctor decides alike). A stop in the middle of an epoch (``request_stop(now=True)``) must come on every rank
    at the same step: nothing in `fit` makes one (the LR finder, which does, is refused). Dropout draws its masks
    from a generator seeded by (``seed``, epoch, rank): different on each rank, and the same after a resume."""

    def __init__(self, world: World, batches: ShardedBatches, seed: int):
        self.world, self.batches, self.seed = world, batches, seed
        self._metrics: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        with torch.no_grad():
            for t in list(trainer.model.parameters()) + list(trainer.model.buffers()):
                _collective(dist.broadcast, t, 0)
        members = isinstance(trainer.metrics, type) and issubclass(trainer.metrics, MemberMetrics)
        self._metrics = (trainer.metrics, trainer.eval_metrics)
        trainer.metrics = ReducedMemberMetrics if members else ReducedMetrics
        extra = trainer.eval_metrics  # validation with --metrics: `partial(MetricAccumulator, extra_metrics=...)`
        if isinstance(extra, partial) and extra.func is MetricAccumulator:
            trainer.eval_metrics = partial(ReducedMetrics, *extra.args, **extra.keywords)

    def on_epoch_start(self, trainer: Trainer, *, epoch: int) -> None:
        torch.manual_seed(hash((self.seed, epoch, self.world.rank)) & 0x7FFF_FFFF_FFFF)
        self.batches.take_share()

    @torch.no_grad()
    def on_after_backward(self, trainer: Trainer, *, loss: torch.Tensor) -> None:
        grads = [p.grad for g in trainer.optimizer.param_groups for p in g["params"] if p.grad is not None]
        flat = torch.cat([t.reshape(-1) for t in grads])
        flat.mul_(self.batches.take_share())  # a weighted sum over ranks: the global batch's mean gradient
        _all_reduce(flat)
        offset = 0
        for t in grads:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    def on_epoch_end(self, trainer: Trainer, *, epoch: int, logs: dict[str, float]) -> None:
        with torch.no_grad():
            for t in trainer.model.buffers():
                _collective(dist.broadcast, t, 0)  # the weights rank 0 saves carry its statistics
        stop = torch.tensor([float(trainer.stopping)], device=trainer.device)
        _all_reduce(stop, op=dist.ReduceOp.MAX)
        if stop.item() > 0 and not trainer.stopping:
            trainer.request_stop("another rank of the job stopped")

    def on_fit_end(self, trainer: Trainer) -> None:
        if self._metrics is not None:  # evaluation after the fit is per process
            (trainer.metrics, trainer.eval_metrics), self._metrics = self._metrics, None


def _gather_outputs(outputs: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every rank's kept ``(out, y)`` batches, in rank order, on every rank (as CPU tensors through
    ``all_gather_object``: shards may be empty or differ in length; this runs once per evaluation)."""
    local = tuple(torch.cat(t).cpu() for t in zip(*outputs)) if outputs else None
    parts: list[Any] = [None] * dist.get_world_size()
    _collective(dist.all_gather_object, parts, local)
    return [(out.to(device), y.to(device)) for out, y in (p for p in parts if p is not None)]


def _all_reduce(t: torch.Tensor, op: Any = None) -> None:
    _collective(dist.all_reduce, t, op=dist.ReduceOp.SUM if op is None else op)


def _collective(fn, *args: Any, **kwargs: Any) -> None:
    """A collective whose peer is gone ends this rank's run as terminated (its checkpoint resumes the job)."""
    try:
        fn(*args, **kwargs)
    except (RuntimeError, dist.DistBackendError) as e:
        raise Terminated(f"another rank of the job is gone ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def launch(argv: list[str], nproc: int, *, run_dir: str | None = None) -> int:
    """Run ``trainwise ARGV`` as ``nproc`` processes on this machine through torch's elastic launcher (what
    ``torchrun --standalone --nproc-per-node N -m trainwise ARGV`` does) and return the job's exit status:
    the ranks' own when they agree (0 done, 2 bad input, 3 failed, 130/143 interrupted), 3 with a message
    naming the rank when one died, so that the others were stopped (``run_dir``: where the resume command points)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException  # (the launcher: lazy, only a process
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # that starts a job needs it)
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch  # (lazy, as above)

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # the job's outcome is said below, once
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))  # cores shared, not oversubscribed
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"trainwise-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2)
    try:
        elastic_launch(config, sys.executable)("-m", "trainwise", *argv)
        return 0
    except SignalException as e:  # Ctrl-C / SIGTERM to the launcher: the ranks got it too and saved their state
        return 143 if e.sigval == signal.SIGTERM else 130
    except ChildFailedError as e:
        failures = e.failures
    # the cause: a rank that ended by itself, not one the launcher stopped after it (SIGTERM -> 143)
    cause = [(r, f) for r, f in sorted(failures.items()) if f.exitcode not in (143, -signal.SIGTERM)] or sorted(failures.items())
    rank, failure = cause[0]
    code = failure.exitcode
    if code in (1, 2, 3, 130, 143):  # the rank ended by itself and said why (1: a bug, reported as one)
        return code
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    again = f"; resume it: trainwise fit --resume {run_dir}" if run_dir else ""
    print(f"trainwise fit: rank {rank} of {nproc} died ({how}), so the job was stopped{again}", file=sys.stderr)
    return 3


def check_distributed(cfg: RunConfig, prep: PreparedData) -> None:
    """What a data-parallel job cannot do, refused before it joins the others (and by the launching process)."""
    why = "--restarts (each restart is a run: train them stacked in one process, without --nproc)" if cfg.restarts > 1 else \
        "--lr auto (the LR finder runs in one process: run `trainwise lr-find`, then give --lr)" if cfg.lr == "auto" else \
        "data read through a DataLoader (image folders, torch Datasets): it shards in-memory arrays" \
        if "train" not in prep.arrays else "sample weights (--weight-column, sample_weight; not sharded yet)" if prep.weights is not None else \
        "class probabilities as targets (soft targets; not sharded yet)" if prep.soft is not None else None
    if why:
        raise TrainwiseError(f"data-parallel training (--nproc, torchrun) does not take {why}",
                             hint="train in one process, or change the option named")
