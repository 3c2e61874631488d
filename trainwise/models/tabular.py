"""``--model tabular``: an MLP for tables assembled from the field's best-by-default recipes, each ingredient a
switch in the spec so its effect can be measured (README: Tabular data).

- numeric columns: a learnable per-column scale (RealMLP), then periodic embeddings (``rtdl_num_embeddings``);
  one-hot columns pass through as they are;
- the MLP is a TabM efficient ensemble (the ``tabm`` package): ``k`` members that share their weight matrices and
  differ in per-member scalings, trained at once on the same batches, each with its own loss
  (`MemberLoss`); evaluated, the model returns the members' averaged prediction, in the form of a plain model's
  output (log-probabilities, a logit, or values), so evaluation, prediction and ONNX export need nothing new.

The input is the preprocessed row: its first ``n_numeric`` values are the numeric columns (already
standardized, or robust-scaled and soft-clipped), the rest the one-hot columns (see `data.preprocess`).
``tabm`` and ``rtdl_num_embeddings`` load only when a tabular model is built (~1 s: scikit-learn's trees).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import TrainwiseError

__all__ = ["TabularNet", "MemberLoss", "combine_members", "tabular_recipe", "TABULAR_DEFAULTS"]

# the defaults of ``tabular``, measured on benchmarks/vs_boosting.py (README: Tabular data); each is a spec key
# label smoothing is off by default: on seed 0 it bought 0.8 points of AUROC and nothing in accuracy, and a smoothed
# training loss cannot reach 0, which misleads `trainwise sanity` and the doctor's loss rules
TABULAR_DEFAULTS: dict[str, Any] = {"k": 8, "width": 256, "depth": 2, "embedding": "periodic", "d_embedding": 16,
                                    "frequency_scale": 0.1, "scale": True, "smoothing": 0.0}
_KINDS = {"k": int, "width": int, "depth": int, "embedding": str, "d_embedding": int, "frequency_scale": float,
          "scale": bool, "smoothing": float}
_EXAMPLE = "tabular, or tabular:k=1,embedding=none (keys: " + ", ".join(TABULAR_DEFAULTS) + ")"


def _value(spec: str, key: str, text: str) -> Any:
    kind = _KINDS[key]
    try:
        if kind is bool:
            if text.lower() not in ("on", "off", "true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("on", "true", "1", "yes")
        value = kind(text)
    except ValueError:
        raise TrainwiseError(f"model spec '{spec}': {key}={text} is not {'on/off' if kind is bool else 'a number' if kind is not str else 'valid'}",
                             hint=f"e.g. {_EXAMPLE}") from None
    if key == "embedding" and value not in ("periodic", "none"):
        raise TrainwiseError(f"model spec '{spec}': embedding={value} is not one of periodic, none", hint=f"e.g. {_EXAMPLE}")
    if kind is int and value < 1:
        raise TrainwiseError(f"model spec '{spec}': {key}={value} is too small", hint=f"use a positive whole number, e.g. {_EXAMPLE}")
    if kind is float and not (value >= 0 and math.isfinite(value)) or key == "smoothing" and value >= 1 \
            or key == "frequency_scale" and value <= 0:
        raise TrainwiseError(f"model spec '{spec}': {key}={value} is out of range",
                             hint="smoothing lies in [0, 1) (e.g. 0.1), frequency_scale is positive (e.g. 0.1)")
    return value


def tabular_recipe(spec: str, rest: str, *, in_features: int, n_numeric: int, out_features: int, kind: str,
                   dropout: float) -> dict[str, Any]:
    """The recipe of ``tabular[:key=value,...]`` for these inputs (``n_numeric`` of ``in_features`` are numeric).

    >>> r = tabular_recipe("tabular:k=4", "k=4", in_features=5, n_numeric=3, out_features=2, kind="multiclass", dropout=0.1)
    >>> r["builder"], r["k"], r["n_numeric"], r["embedding"]
    ('tabular', 4, 3, 'periodic')
    """
    options, given = dict(TABULAR_DEFAULTS), set()
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, text = item.partition("=")
        if not sep or key.strip() not in _KINDS:
            raise TrainwiseError(f"model spec '{spec}': '{item}' is not key=value with a known key",
                                 hint=f"e.g. {_EXAMPLE}")
        if key.strip() in given:
            raise TrainwiseError(f"model spec '{spec}' sets {key.strip()} twice", hint=f"give each key once, e.g. {_EXAMPLE}")
        given.add(key.strip())
        options[key.strip()] = _value(spec, key.strip(), text.strip())
    return {"builder": "tabular", "in_features": in_features, "n_numeric": n_numeric, "out_features": out_features,
            "kind": kind, "dropout": float(dropout), **options}


def combine_members(out: torch.Tensor, kind: str) -> torch.Tensor:
    """Members' outputs ``(batch, k, d)`` -> one prediction ``(batch, d)`` in a plain model's output form: the
    mean of the members' probabilities (as log-probabilities, or a logit for binary), or of their values.

    >>> out = torch.tensor([[[0.0, 2.0], [2.0, 0.0]]])
    >>> combine_members(out, "multiclass").exp().round(decimals=3).tolist()
    [[0.5, 0.5]]
    """
    if kind == "multiclass":
        return torch.logsumexp(out.log_softmax(-1), 1) - math.log(out.shape[1])
    if kind in ("binary", "multilabel"):  # a logit per label: the mean of the members' probabilities
        return torch.logit(out.sigmoid().mean(1), eps=1e-7)
    return out.mean(1)


class TabularNet(nn.Module):
    """Per-column scale -> periodic embeddings of the numeric columns (+ one-hot columns) -> TabM backbone ->
    one linear head per member. Training: ``(batch, k, out)``; evaluation: the members combined, ``(batch, out)``.

    >>> net = TabularNet(5, 3, 2, kind="multiclass", k=4)
    >>> net.train()(torch.zeros(6, 5)).shape, net.eval()(torch.zeros(6, 5)).shape
    (torch.Size([6, 4, 2]), torch.Size([6, 2]))
    """

    def __init__(self, in_features: int, n_numeric: int, out_features: int, *, kind: str, k: int = 8, width: int = 256,
                 depth: int = 2, dropout: float = 0.0, embedding: str = "periodic", d_embedding: int = 16,
                 frequency_scale: float = 0.1, scale: bool = True):
        import rtdl_num_embeddings  # noqa: PLC0415 - lazy on purpose: ~1 s (scikit-learn's trees), only for tabular models
        import tabm  # noqa: PLC0415 - lazy on purpose: as above

        super().__init__()
        self.kind, self.n_numeric = kind, n_numeric
        n_onehot = in_features - n_numeric
        self.scale = nn.Parameter(torch.ones(n_numeric)) if scale and n_numeric else None
        self.embed = rtdl_num_embeddings.PeriodicEmbeddings(n_numeric, d_embedding, frequency_init_scale=frequency_scale, lite=True) \
            if embedding == "periodic" and n_numeric else None
        d_numeric = d_embedding if self.embed is not None else 1
        self.ensemble = tabm.EnsembleView(k=k)
        self.backbone = tabm.make_tabm_backbone(d_in=n_numeric * d_numeric + n_onehot, n_blocks=depth, d_block=width, dropout=dropout,
                                                k=k, start_scaling_init="normal" if self.embed is not None else "random-signs",
                                                start_scaling_init_chunks=[d_numeric] * n_numeric + [1] * n_onehot)
        self.head = tabm.LinearEnsemble(width, out_features, k=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        num, onehot = x[:, :self.n_numeric], x[:, self.n_numeric:]
        if self.scale is not None:
            num = num * self.scale
        if self.embed is not None:
            num = self.embed(num).flatten(1)
        out = self.head(self.backbone(self.ensemble(torch.cat([num, onehot], 1))))
        return out if self.training else combine_members(out, self.kind)


class MemberLoss(nn.Module):
    """The loss of a `TabularNet`: in training, the mean of each member's own loss (``out``: ``(batch, k, d)``;
    each member learns on its own, which keeps them diverse), with label ``smoothing`` for classification;
    on a combined ``(batch, d)`` output (evaluation) the plain ``base`` loss, so validation and test losses
    are the true cross-entropy or squared error.

    >>> loss = MemberLoss(nn.CrossEntropyLoss(), smoothing=0.0)
    >>> out, y = torch.randn(4, 3, 5), torch.tensor([0, 1, 2, 3])
    >>> bool(torch.isclose(loss(out, y), sum(F.cross_entropy(out[:, j], y) for j in range(3)) / 3))
    True
    """

    def __init__(self, base: nn.Module, *, smoothing: float = 0.0):
        super().__init__()
        self.base, self.smoothing = base, smoothing

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if out.ndim != 3:
            return self.base(out, y)
        k = out.shape[1]
        if isinstance(y, tuple):  # weighted rows or soft targets: each member's rows alike, by `base` (`SampleWeighted`)
            return self.base(out.flatten(0, 1), tuple(None if t is None else t.repeat_interleave(k, 0) for t in y),
                             smoothing=self.smoothing)
        flat, target = out.flatten(0, 1), y.repeat_interleave(k, 0)
        if isinstance(self.base, nn.CrossEntropyLoss):
            return F.cross_entropy(flat, target, weight=self.base.weight, label_smoothing=self.smoothing)
        if isinstance(self.base, nn.BCEWithLogitsLoss):
            target = target * (1 - self.smoothing) + self.smoothing / 2
        return self.base(flat, target)
