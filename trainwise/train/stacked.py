"""K models of one architecture trained as one: stacked weights, batched matrix products, one optimizer step.

Small models spend most of a step in per-call overhead, not arithmetic, so K of them cost little more than
one when their weights are stacked: a linear layer of K members is one ``baddbmm`` over ``(K, in, out)``
weights, each member with its own batch ``(K, B, in)``. Every member keeps what it would have alone: its
initialization (each is built alone, then stacked), its data order (`StackedBatches`), its dropout masks (its
own generator, drawn exactly as ``F.dropout`` draws them), its batch-norm statistics, its loss (the sum of
the members' losses has each member's own gradient), its optimizer state (an elementwise optimizer over the
stacked tensors updates each member as it would alone) and its metrics (`PopulationMetrics`).

`StackedMLP.keep` drops members that stopped (early stopping): the population shrinks, so a stopped member
costs nothing more. What stacks: `layers_reason` (the model) and `loss_reason` (the loss); None: it stacks.
Members that differ in their own lr, weight decay, momentum, penalties and clipping: `train.member_steps`.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TrainwiseError
from .metrics import extra_metrics

__all__ = ["StackedMLP", "StackedBatches", "PopulationLoss", "PopulationMetrics", "layers_reason", "loss_reason",
           "reindex_optimizer", "upgrade_layout", "LAYOUT"]

_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SELU, nn.SiLU, nn.Softplus,
                nn.Mish, nn.Hardtanh, nn.ReLU6, nn.Identity, nn.PReLU)


def layers_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained stacked with others of its kind (None: it can): only sequences of
    Flatten, Linear, BatchNorm1d, Dropout and elementwise activations stack today."""
    if not isinstance(model, nn.Sequential):
        return f"the model is a {type(model).__name__}, not a sequence of layers"
    for m in model:
        if isinstance(m, nn.PReLU) and m.num_parameters > 1:
            return "a PReLU with per-channel parameters does not stack"
        if not isinstance(m, (nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.Dropout, *_ELEMENTWISE)):
            return f"its layer {type(m).__name__} does not stack (only linear layers, batch norm, dropout, activations)"
        if isinstance(m, nn.BatchNorm1d) and not (m.affine and m.track_running_stats):
            return "a batch norm without affine parameters or running statistics does not stack"
    return None


def _architecture(model: nn.Sequential) -> list[tuple]:
    """The layer types and parameter shapes (not dropout rates, which may differ per member)."""
    return [(type(m).__name__, *(tuple(p.shape) for p in m.parameters())) for m in model]


class _Linear(nn.Module):
    """K members' linear layers as one batched product. The weights are held as ``(K, in, out)``, the transpose of
    each member's ``(out, in)``: the product ``x @ W`` then hands autograd each weight's gradient in the weight's
    own layout, which it keeps as it is; held as ``(K, out, in)`` (used through a transposed view), every step
    copied each gradient into the weight's layout first (8% of a 64-32-10 population's step at K = 16, batch 32).
    A population checkpoint written with the old layout is converted on resume (`upgrade_layout`)."""

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach().T for m in layers]))          # (K, in, out)
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers])[:, None, :]) \
            if layers[0].bias is not None else None                                             # (K, 1, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, self.weight) if self.bias is None else torch.baddbmm(self.bias, x, self.weight)

    def member(self, k: int) -> dict[str, torch.Tensor]:
        return {"weight": self.weight[k].T} | ({"bias": self.bias[k, 0]} if self.bias is not None else {})

    def keep(self, idx: torch.Tensor) -> None:
        self.weight = nn.Parameter(self.weight.detach()[idx])
        if self.bias is not None:
            self.bias = nn.Parameter(self.bias.detach()[idx])


class _BatchNorm(nn.Module):
    """K members' BatchNorm1d as one over K·H channels: each channel's statistics are still its own batch's."""

    def __init__(self, layers: Sequence[nn.BatchNorm1d]):
        super().__init__()
        first = layers[0]
        self.eps, self.momentum, self.features = first.eps, first.momentum, first.num_features
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]))  # (K, H)
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]))
        self.register_buffer("running_mean", torch.stack([m.running_mean for m in layers]))
        self.register_buffer("running_var", torch.stack([m.running_var for m in layers]))
        self.register_buffer("num_batches_tracked", first.num_batches_tracked.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K, B, H = x.shape
        if self.training:
            self.num_batches_tracked.add_(1)
        flat = x.transpose(0, 1).reshape(B, K * H)
        out = F.batch_norm(flat, self.running_mean.view(-1), self.running_var.view(-1), self.weight.view(-1),
                           self.bias.view(-1), self.training, self.momentum, self.eps)
        return out.view(B, K, H).transpose(0, 1)

    def member(self, k: int) -> dict[str, torch.Tensor]:
        return {"weight": self.weight[k], "bias": self.bias[k], "running_mean": self.running_mean[k],
                "running_var": self.running_var[k], "num_batches_tracked": self.num_batches_tracked}

    def keep(self, idx: torch.Tensor) -> None:
        self.weight, self.bias = nn.Parameter(self.weight.detach()[idx]), nn.Parameter(self.bias.detach()[idx])
        self.running_mean, self.running_var = self.running_mean[idx], self.running_var[idx]


class _Dropout(nn.Module):
    """Each member's mask from its own generator with its own rate, drawn as ``F.dropout`` draws it on the CPU
    (``empty_like(x).bernoulli_(1 - p)``, divided by ``1 - p``; nothing drawn when ``p`` is 0): the same masks
    as the member alone. The division is one multiplication of all masks by each member's ``1 / (1 - p)``,
    computed as the division computes it (the same float32 value: a mask of 0s and 1s times it is exact)."""

    def __init__(self, p: Sequence[float], generators: list[torch.Generator]):
        super().__init__()
        self.p, self.generators = list(p), generators
        self._scale: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not any(self.p):
            return x
        if self._scale is None or self._scale.device != x.device or self._scale.dtype != x.dtype:
            self._scale = torch.stack([torch.ones((), dtype=x.dtype, device=x.device).div_(1 - p) if p < 1 else
                                       torch.zeros((), dtype=x.dtype, device=x.device) for p in self.p])
        noise = torch.empty_like(x)
        for n, p, g in zip(noise.unbind(0), self.p, self.generators):
            if p == 0:
                n.fill_(1)
            elif p >= 1:
                n.zero_()
            else:
                n.bernoulli_(1 - p, generator=g)
        return x * noise.mul_(self._scale.view(-1, *([1] * (x.ndim - 1))))

    def keep(self, idx: Sequence[int]) -> None:
        self.p, self._scale = [self.p[i] for i in idx], None


class StackedMLP(nn.Module):
    """K `Sequential` models of one architecture (each initialized alone) as one module: input ``(K, B, ...)``
    (member k's batch in row k), output ``(K, B, out)``. ``generators``: each member's random number
    generator for dropout (alone, dropout draws from torch's global generator: pass its state after the
    member was built, and the masks are the ones it would have drawn).

    >>> torch.manual_seed(0); a, b = nn.Sequential(nn.Linear(3, 2)), nn.Sequential(nn.Linear(3, 2))  # doctest: +ELLIPSIS
    <...>
    >>> s, x = StackedMLP([a, b]), torch.randn(2, 4, 3)
    >>> torch.allclose(s(x)[1], b(x[1]), rtol=1e-6, atol=1e-7), s.size  # bmm and addmm may round differently
    (True, 2)
    """

    def __init__(self, members: Sequence[nn.Sequential], generators: list[torch.Generator] | None = None):
        super().__init__()
        reason = layers_reason(members[0]) or next((f"member {k}'s layers differ from member 0's" for k, m in
                                                    enumerate(members) if _architecture(m) != _architecture(members[0])), None)
        if reason is not None:
            raise TrainwiseError(f"these models cannot be stacked: {reason}", hint="train them one by one")
        self.generators = list(generators) if generators is not None else [torch.default_generator] * len(members)
        self.size = len(members)
        self.names: list[str] = []  # the member module's name of each stacked layer (its state_dict prefix)
        layers: list[nn.Module] = []
        for i, first in enumerate(members[0]):
            group = [m[i] for m in members]
            if isinstance(first, nn.Linear):
                layers.append(_Linear(group))
            elif isinstance(first, nn.BatchNorm1d):
                layers.append(_BatchNorm(group))
            elif isinstance(first, nn.Dropout):
                layers.append(_Dropout([m.p for m in group], self.generators))
            elif isinstance(first, nn.Flatten):
                layers.append(nn.Flatten(2))  # (K, B, ...) -> (K, B, features)
            else:
                layers.append(copy.deepcopy(first))  # elementwise: any shape (a copy: the member's hooks stay its own)
            self.names.append(str(i))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def activations(self) -> list[tuple[str, nn.Module]]:
        """The ReLU, sigmoid and tanh layers, with their names in the member modules (the doctor watches them)."""
        return [(n, m) for n, m in zip(self.names, self.layers) if isinstance(m, (nn.ReLU, nn.Sigmoid, nn.Tanh))]

    def weight_grad_norms(self) -> torch.Tensor:
        """``(layers, K)``: each member's gradient norm of each linear weight (the doctor's sample)."""
        return torch.stack([layer.weight.grad.flatten(1).norm(dim=1) for layer in self.layers
                            if isinstance(layer, _Linear) and layer.weight.grad is not None])

    def penalized_parameters(self, penalize: str = "weights") -> list[nn.Parameter]:
        """The stacked parameters an L1/L2 penalty covers (`penalized_parameters`' rule): the linear layers'
        weight matrices; with ``all`` every parameter (biases, batch norm)."""
        params: list[nn.Parameter] = []
        for layer in self.layers:
            if isinstance(layer, _Linear):
                params += [layer.weight] + ([layer.bias] if penalize == "all" and layer.bias is not None else [])
            elif isinstance(layer, _BatchNorm) and penalize == "all":
                params += [layer.weight, layer.bias]
        return params

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's state dict (views into the stack), with the keys of the member module."""
        out: dict[str, torch.Tensor] = {}
        for name, layer in zip(self.names, self.layers):
            if isinstance(layer, (_Linear, _BatchNorm)):
                out |= {f"{name}.{key}": v for key, v in layer.member(k).items()}
        return out

    def keep(self, idx: Sequence[int]) -> None:
        """Keep only the members ``idx`` (in that order): new, smaller parameters (`reindex_optimizer` moves an
        optimizer's state to them)."""
        index = torch.as_tensor(list(idx), dtype=torch.long, device=next(self.parameters()).device)
        for layer in self.layers:
            if isinstance(layer, (_Linear, _BatchNorm)):
                layer.keep(index)
            elif isinstance(layer, _Dropout):
                layer.keep(idx)
        self.generators[:] = [self.generators[i] for i in idx]
        self.size = len(idx)


LAYOUT = 2  # the stacked linear weights' layout in a population checkpoint: 1 = (K, out, in) (until 2026-12-06), 2 = (K, in, out)


def upgrade_layout(state: dict[str, Any], stacked: StackedMLP, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A population's trainer state (`Trainer.state_dict`) written with layout 1, converted to this one: each
    stacked linear weight, and its optimizer state (moments, momentum buffers), transposed to ``(K, in, out)``."""
    weights = {f"{name}.weight": layer.weight for name, layer in stacked.named_modules() if isinstance(layer, _Linear)}
    model = dict(state["model"])
    for key in weights:
        if key in model:
            model[key] = model[key].transpose(1, 2).contiguous()
    ids = {id(w) for w in weights.values()}
    flip = {i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"]) if id(p) in ids}
    opt = state.get("optimizer")
    if isinstance(opt, dict) and isinstance(opt.get("state"), dict):
        opt = {**opt, "state": {i: {k: v.transpose(1, 2).contiguous() if int(i) in flip and isinstance(v, torch.Tensor) and v.ndim == 3
                                    else v for k, v in st.items()} for i, st in opt["state"].items()}}
    return {**state, "model": model, "optimizer": opt}


def reindex_optimizer(optimizer: torch.optim.Optimizer, old: list[nn.Parameter], new: list[nn.Parameter],
                      idx: Sequence[int], size: int) -> None:
    """Point ``optimizer`` at the ``new`` parameters (``old`` kept to the members ``idx`` of ``size``), with
    each kept member's state (moments, momentum buffers) moved along; counters shared by all stay as they are."""
    index = torch.as_tensor(list(idx), dtype=torch.long)
    swap = {id(o): n for o, n in zip(old, new)}
    for group in optimizer.param_groups:
        group["params"] = [swap.get(id(p), p) for p in group["params"]]
    for o, n in zip(old, new):
        state = optimizer.state.pop(o, None)
        if state is not None:
            optimizer.state[n] = {k: v[index.to(v.device)] if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == size
                                  else v for k, v in state.items()}


class StackedBatches:
    """Each member's shuffled mini-batches, stacked: ``(K, B, ...)`` inputs, ``(K, B, ...)`` targets. Member k
    draws its permutation from its own generator seeded as its `TensorBatches` would be, so it sees the same
    batches in the same order as alone; the data itself is held once. ``shuffle=False`` (validation): every
    member gets the same rows."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, *, batch_size: int, seeds: Sequence[int], shuffle: bool = True):
        self.X, self.y, self.batch_size, self.shuffle = X, y, int(batch_size), shuffle
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.size = len(self.generators)

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.y) * self.size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        X, y, B, n, K = self.X, self.y, self.batch_size, len(self.y), self.size
        if not self.shuffle:
            for i in range(0, n, B):
                xb, yb = X[i:i + B], y[i:i + B]
                yield xb.expand(K, *xb.shape), yb.expand(K, *yb.shape)
            return
        perms = torch.stack([torch.randperm(n, generator=g) for g in self.generators]).to(X.device)
        for i in range(0, n, B):
            idx = perms[:, i:i + B]
            flat = idx.reshape(-1)  # (index_select of the flat rows: half the cost of X[idx])
            yield X.index_select(0, flat).view(*idx.shape, *X.shape[1:]), y.index_select(0, flat).view(*idx.shape, *y.shape[1:])

    def head(self, n: int = 2) -> torch.Tensor:
        return self.X[:n]

    def keep(self, idx: Sequence[int]) -> None:
        self.generators = [self.generators[i] for i in idx]
        self.size = len(self.generators)

    def state_dict(self) -> dict:
        """The members' shuffle generators (exact resume)."""
        return {"generators": [g.get_state() for g in self.generators]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["generators"]) != self.size:
            raise ValueError(f"{len(state['generators'])} shuffle states for {self.size} members")
        for g, s in zip(self.generators, state["generators"]):
            g.set_state(s)


def loss_reason(loss: nn.Module) -> str | None:
    """Why ``loss`` cannot be split into one loss per member (None: it can): a mean over the samples is a
    per-member mean of per-sample losses; cross-entropy's class weights are too (a weighted mean, divided by each
    member's own sum of weights), and so is bce_with_logits' pos_weight (a plain mean of weighted terms)."""
    if getattr(loss, "reduction", None) != "mean" or (getattr(loss, "weight", None) is not None
                                                      and not isinstance(loss, nn.CrossEntropyLoss)):
        return f"the loss {type(loss).__name__} is not split per member (only means over the samples are)"
    return None


class PopulationLoss(nn.Module):
    """Each member's loss, ``(K,)``, from a loss module with mean reduction: the same per-sample losses
    (a copy of the module with ``reduction='none'``), averaged over each member's own batch."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        reason = loss_reason(loss)
        if reason is not None:
            raise TrainwiseError(reason, hint="train the members one by one (--no-vectorize)")
        self.per_sample = copy.copy(loss)
        self.per_sample.reduction = "none"
        self.by_class = isinstance(loss, nn.CrossEntropyLoss)  # with class indices: the (K, C, B) layout (`forward`)

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.by_class and out.ndim == 3 and y.ndim == 2 and not y.is_floating_point():
            # class indices: the scores laid out (K, C, B), so that the softmax over the classes runs along the batch
            # (log-softmax forward and backward 57 against 112 us for K = 16, batch 32, 10 classes; the K = 16
            # population 4% faster in all, the copy included)
            per_sample = self.per_sample(out.transpose(1, 2).contiguous(), y)
        else:
            per_sample = self.per_sample(out.reshape(-1, *out.shape[2:]), y.reshape(-1, *y.shape[2:]))
        weight = getattr(self.per_sample, "weight", None)
        if weight is not None:  # class-weighted cross-entropy: torch's mean divides by the batch's sum of weights
            return per_sample.reshape(out.shape[0], -1).sum(1) / weight[y.reshape(out.shape[0], -1)].sum(1)
        return per_sample.reshape(out.shape[0], -1).mean(1)


class PopulationMetrics:
    """`MetricAccumulator`'s sums with one entry per member; `compute` gives the population's mean under the
    usual names and member k's value under ``<name>[k]`` (one host read per epoch, as alone)."""

    def __init__(self, kind: str, device: torch.device, *, target_std: float = 1.0, size: int = 1,
                 extra_metrics: tuple[str, ...] = (), n_classes: int | None = None, target_mean: float = 0.0):
        self.kind, self.target_std, self.size, self.count, self.device = kind, target_std, size, 0, device
        self.extra_metrics, self.n_classes, self.target_mean = tuple(extra_metrics), n_classes, target_mean
        self.outputs: list[tuple[torch.Tensor, torch.Tensor]] = []  # kept only for extra_metrics (validation, test)
        z = torch.zeros(size, dtype=torch.float64, device=device)
        self.loss_sum, self.correct = z.clone(), z.clone()
        self.member_finite_batches = torch.zeros(size, dtype=torch.int64, device=device)
        self.extra: dict[str, list] = {}  # name -> [(K,) device sum, number of values]: penalty, grad norm
        if kind == "regression":
            self.abs_err, self.sq_err, self.y_sum, self.y_sq = z.clone(), z.clone(), z.clone(), z.clone()

    @property
    def finite_batches(self) -> torch.Tensor:
        return self.member_finite_batches.min()

    @torch.no_grad()
    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        n = y.shape[1]
        self.count += n
        if self.extra_metrics:
            self.outputs.append((out, y))
        self.loss_sum.add_(loss, alpha=n)
        self.member_finite_batches.add_(torch.isfinite(self.loss_sum))
        if self.kind == "multiclass":
            self.correct.add_((out.argmax(-1) == y).sum(1))
        elif self.kind == "binary":
            self.correct.add_(((out > 0) == (y > 0.5)).flatten(1).sum(1))
        else:
            err = (out.reshape(y.shape) - y).flatten(1)
            yf = y.flatten(1)
            self.abs_err.add_(err.abs().sum(1))
            self.sq_err.add_(err.square().sum(1))
            self.y_sum.add_(yf.sum(1))
            self.y_sq.add_(yf.square().sum(1))

    @torch.no_grad()
    def add(self, name: str, value: torch.Tensor) -> None:
        """One per-member value ``(K,)`` of a per-step quantity; `compute` reports each member's mean."""
        slot = self.extra.get(name)
        if slot is None:
            slot = self.extra[name] = [torch.zeros(self.size, dtype=torch.float64, device=self.device), 0]
        slot[0].add_(value)
        slot[1] += 1

    def compute(self, prefix: str) -> dict[str, float]:
        logs = self._compute(prefix)
        if self.extra_metrics and self.outputs:  # --metrics: each member's from its own outputs, as alone
            out, y = (torch.cat(t, dim=1) for t in zip(*self.outputs))
            members = [extra_metrics(self.extra_metrics, out[k], y[k], kind=self.kind, n_classes=self.n_classes,
                                     target_std=self.target_std, target_mean=self.target_mean) for k in range(out.shape[0])]
            for name in self.extra_metrics:
                logs[f"{prefix}/{name}"] = sum(m[name] for m in members) / len(members)
            for k, m in enumerate(members):
                logs |= {f"{prefix}/{name}[{k}]": v for name, v in m.items()}
        if self.extra:
            sums = torch.stack([s for s, _ in self.extra.values()]).tolist()
            for (name, (_, count)), values in zip(self.extra.items(), sums):
                logs[f"{prefix}/{name}"] = sum(values) / len(values) / max(count, 1)
                logs |= {f"{prefix}/{name}[{k}]": v / max(count, 1) for k, v in enumerate(values)}
        return logs

    def _compute(self, prefix: str) -> dict[str, float]:
        n = max(self.count, 1)
        names = ("loss", "mae", "rmse", "r2") if self.kind == "regression" else ("loss", "accuracy")
        parts = [self.loss_sum] + ([self.abs_err, self.sq_err, self.y_sum, self.y_sq] if self.kind == "regression"
                                   else [self.correct])
        rows = torch.stack(parts + [self.member_finite_batches.double()]).T.tolist()  # the one host read
        per_member = []
        for row in rows:
            if self.kind == "regression":
                loss, mae, sse, ys, ys2 = row[:5]
                sst, s = ys2 - ys * ys / n, self.target_std
                values = [loss / n, mae / n * s, (sse / n) ** 0.5 * s, 1.0 - sse / sst if sst > 0 else math.nan]
            else:
                values = [row[0] / n, row[1] / n]
            per_member.append(values)
        logs = {f"{prefix}/{name}": sum(v[i] for v in per_member) / len(per_member) for i, name in enumerate(names)}
        for k, (values, row) in enumerate(zip(per_member, rows)):
            logs |= {f"{prefix}/{name}[{k}]": v for name, v in zip(names, values)}
            if not math.isfinite(values[0]):
                logs[f"{prefix}/finite_batches[{k}]"] = row[-1]
        return logs
