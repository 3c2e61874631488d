"""The lecture's backprop example, worked by hand and checked against autograd.

A 1-2-1 network: x -> two sigmoid units (z_i = w_i·x + b_i, a_i = σ(z_i)) -> ŷ = w3·a1 + w4·a2 + b3, with the
MSE loss L = (y − ŷ)² of one sample. Every gradient is the product of its chain-rule factors. Then one step of
gradient descent with those gradients (w ← w − lr·dL/dw, the lecture's manual update at lr 0.01), the loss
before and after it, and the same step taken by autograd and ``torch.optim.SGD``.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import TrainwiseError, did_you_mean

__all__ = ["explain_backprop", "format_backprop", "LECTURE_PARAMS"]

# hidden weights 1 and −1, hidden biases 1 and 2, output weights 1 and 2, output bias −1; one sample (1, 3)
LECTURE_PARAMS = {"w1": 1.0, "w2": -1.0, "b1": 1.0, "b2": 2.0, "w3": 1.0, "w4": 2.0, "b3": -1.0}


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _forward(x: float, p: dict[str, float]) -> tuple[float, float, float, float, float]:
    z1, z2 = p["w1"] * x + p["b1"], p["w2"] * x + p["b2"]
    a1, a2 = _sigmoid(z1), _sigmoid(z2)
    return z1, a1, z2, a2, p["w3"] * a1 + p["w4"] * a2 + p["b3"]


def explain_backprop(x: float = 1.0, y: float = 3.0, *, lr: float = 0.01, **params: float) -> dict[str, Any]:
    """Forward values; per parameter the chain-rule factors, the gradient and autograd's gradient; and one SGD
    step of size ``lr`` with the hand-derived gradients (``step``), checked against ``torch.optim.SGD``.

    >>> r = explain_backprop()
    >>> round(r["forward"]["y_hat"], 4), round(r["gradients"]["b3"]["value"], 4), round(r["gradients"]["b1"]["value"], 4)
    (1.3429, -3.3142, -0.348)
    >>> round(r["step"]["loss_before"], 4), round(r["step"]["loss_after"], 4)
    (2.7459, 2.4632)
    """
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise TrainwiseError(f"lr={lr!r} is not a positive learning rate", hint="give e.g. --lr 0.01 (the lecture's) or 0.1")
    unknown = set(params) - set(LECTURE_PARAMS)
    if unknown:
        bad = sorted(unknown)[0]
        raise TrainwiseError(f"unknown parameter '{bad}' of the 1-2-1 network (parameters: {', '.join(LECTURE_PARAMS)})",
                             hint=did_you_mean(bad, LECTURE_PARAMS) or "use w1 w2 b1 b2 w3 w4 b3")
    p = {**LECTURE_PARAMS, **{k: float(v) for k, v in params.items()}}
    z1, a1, z2, a2, y_hat = _forward(x, p)
    loss = (y - y_hat) ** 2
    dy = -2.0 * (y - y_hat)                      # dL/dŷ
    s1, s2 = a1 * (1 - a1), a2 * (1 - a2)        # da_i/dz_i, the sigmoid's slope
    grads = {
        "b3": (["dL/dŷ", "dŷ/db3"], [dy, 1.0]),
        "w3": (["dL/dŷ", "dŷ/dw3 = a1"], [dy, a1]),
        "w4": (["dL/dŷ", "dŷ/dw4 = a2"], [dy, a2]),
        "b1": (["dL/dŷ", "dŷ/da1 = w3", "da1/dz1 = a1(1−a1)", "dz1/db1"], [dy, p["w3"], s1, 1.0]),
        "b2": (["dL/dŷ", "dŷ/da2 = w4", "da2/dz2 = a2(1−a2)", "dz2/db2"], [dy, p["w4"], s2, 1.0]),
        "w1": (["dL/dŷ", "dŷ/da1 = w3", "da1/dz1 = a1(1−a1)", "dz1/dw1 = x"], [dy, p["w3"], s1, x]),
        "w2": (["dL/dŷ", "dŷ/da2 = w4", "da2/dz2 = a2(1−a2)", "dz2/dw2 = x"], [dy, p["w4"], s2, x]),
    }
    auto = _autograd(x, y, p)
    gradients = {name: {"factors": dict(zip(names, values)), "value": math.prod(values), "autograd": auto[name]}
                 for name, (names, values) in grads.items()}
    after = {k: v - lr * gradients[k]["value"] for k, v in p.items()}
    torch_after, torch_loss = _sgd_step(x, y, p, lr)
    step = {"lr": lr, "params_after": after, "loss_before": loss, "loss_after": (y - _forward(x, after)[-1]) ** 2,
            "torch_params_after": torch_after, "torch_loss_after": torch_loss,
            "max_abs_difference": max(max(abs(after[k] - torch_after[k]) for k in p), abs((y - _forward(x, after)[-1]) ** 2 - torch_loss))}
    return {"input": {"x": x, "y": y}, "params": p,
            "forward": {"z1": z1, "a1": a1, "z2": z2, "a2": a2, "y_hat": y_hat, "loss": loss},
            "gradients": gradients,
            "max_abs_difference": max(abs(g["value"] - g["autograd"]) for g in gradients.values()),
            "step": step}


def _torch_loss(x: float, y: float, t: dict[str, torch.Tensor]) -> torch.Tensor:
    xt = torch.tensor(x, dtype=torch.float64)
    a1, a2 = torch.sigmoid(t["w1"] * xt + t["b1"]), torch.sigmoid(t["w2"] * xt + t["b2"])
    y_hat = t["w3"] * a1 + t["w4"] * a2 + t["b3"]
    return torch.nn.functional.mse_loss(y_hat, torch.tensor(y, dtype=torch.float64))


def _autograd(x: float, y: float, p: dict[str, float]) -> dict[str, float]:
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in p.items()}
    _torch_loss(x, y, t).backward()
    return {k: v.grad.item() for k, v in t.items()}


def _sgd_step(x: float, y: float, p: dict[str, float], lr: float) -> tuple[dict[str, float], float]:
    """The same step the PyTorch way: autograd's gradients, ``torch.optim.SGD``; the parameters and loss after it."""
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in p.items()}
    opt = torch.optim.SGD(t.values(), lr=lr)
    opt.zero_grad()
    _torch_loss(x, y, t).backward()
    opt.step()
    with torch.no_grad():
        return {k: v.item() for k, v in t.items()}, _torch_loss(x, y, t).item()


def format_backprop(r: dict[str, Any]) -> str:
    """The walk-through as text: forward values, then each gradient as its chain of factors."""
    f, i = r["forward"], r["input"]
    lines = [f"sample x={i['x']:g}, y={i['y']:g}; parameters " + ", ".join(f"{k}={v:g}" for k, v in r["params"].items()),
             "forward:",
             f"  z1 = w1·x + b1 = {f['z1']:.4f}    a1 = σ(z1) = {f['a1']:.4f}",
             f"  z2 = w2·x + b2 = {f['z2']:.4f}    a2 = σ(z2) = {f['a2']:.4f}",
             f"  ŷ = w3·a1 + w4·a2 + b3 = {f['y_hat']:.4f}    L = (y − ŷ)² = {f['loss']:.4f}",
             "backward (chain rule; autograd in brackets):"]
    for name, g in r["gradients"].items():
        chain = " × ".join(f"{k} ({v:.4f})" for k, v in g["factors"].items())
        lines.append(f"  dL/d{name} = {chain} = {g['value']:.4f}   [{g['autograd']:.4f}]")
    verdict = "match" if r["max_abs_difference"] < 1e-9 else "DIFFER"
    lines.append(f"hand-derived and autograd gradients {verdict} (largest difference {r['max_abs_difference']:.1e})")
    st = r["step"]
    lines.append(f"one SGD step, w ← w − lr·dL/dw with lr={st['lr']:g} (torch.optim.SGD in brackets):")
    for name, new in st["params_after"].items():
        lines.append(f"  {name} = {r['params'][name]:.4f} − {st['lr']:g}×({r['gradients'][name]['value']:.4f}) = {new:.4f}   "
                     f"[{st['torch_params_after'][name]:.4f}]")
    lines.append(f"  loss {st['loss_before']:.4f} → {st['loss_after']:.4f}   [{st['torch_loss_after']:.4f}]")
    verdict = "match" if st["max_abs_difference"] < 1e-9 else "DIFFER"
    lines.append(f"the hand step and torch.optim.SGD {verdict} (largest difference {st['max_abs_difference']:.1e})")
    return "\n".join(lines)
