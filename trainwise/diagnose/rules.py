"""The doctor's rules: small named functions from the evidence of a run (or of a data set) to findings.

A finding is ``{"code", "severity", "evidence", "advice"}``. A rule takes one frozen evidence object, built
once (`Evidence.from_run`, `DataEvidence.from_arrays`), and returns ``None``, one finding or a list of them.
`RULES` and `DATA_RULES` register the rules in the order their findings are reported; `run_rules` runs them
and `resolve` settles the conflicts between run findings in one explicit step (its docstring is the policy).

>>> ev = Evidence.from_run([{"train/loss": 2.3} for _ in range(6)], baseline={"metric": 0.1, "loss": 2.0})
>>> [(rule, f["code"]) for rule, f in run_rules(ev)]
[('lr_stalls', 'lr_too_high'), ('lr_too_low', 'lr_too_low')]
>>> [f["code"] for f in resolve(ev, run_rules(ev))]  # a loss that never moves: the step is too small
['lr_too_low']
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Evidence", "DataEvidence", "RULES", "DATA_RULES", "REPEATED_INPUTS", "finding", "run_rules", "resolve",
           "non_finite_loss", "lr_diverges", "lr_stalls", "lr_too_low", "underfitting", "overfitting", "stopped_too_early",
           "vanishing_gradients", "exploding_gradients", "saturated_activations", "dead_units",
           "class_imbalance", "train_test_overlap"]

Finding = dict[str, str]
Outcome = Finding | list[Finding] | None


def finding(code: str, severity: str, evidence: str, advice: str) -> Finding:
    """One finding in the doctor's shape.

    >>> finding("lr_too_low", "warning", "the loss barely moved", "raise the learning rate")["code"]
    'lr_too_low'
    """
    return {"code": code, "severity": severity, "evidence": evidence, "advice": advice}


# ----------------------------------------------------------------------------------------------------------- runs
@dataclass(frozen=True, eq=False)
class Evidence:
    """What the run rules look at, derived once from a history and `HealthTracker.stats`.

    ``train``/``val``: every epoch's loss (NaN where missing); ``finite``: the finite training losses;
    ``jumps``: per step between finite training losses, whether it rose by more than 10% of the curve's
    range (all False on a flat curve, whose noise is no oscillation); ``median_grad``: per weight tensor
    (input layer first) the median of its positive sampled gradient norms, empty with fewer than two tensors.

    >>> ev = Evidence.from_run([{"train/loss": v} for v in (3.0, 1.0, 2.0)])
    >>> ev.finite.tolist(), ev.jumps.tolist(), ev.non_finite_epoch
    ([3.0, 1.0, 2.0], [False, True], None)
    """
    history: tuple[dict[str, float], ...]
    kind: str
    metric: str
    baseline_loss: float | None
    baseline_metric: float | None
    early_stopped_at: int | None
    restore_best: bool
    train: np.ndarray
    val: np.ndarray
    finite: np.ndarray
    non_finite_epoch: int | None
    jumps: np.ndarray
    grad_norms: np.ndarray
    weight_names: tuple[str, ...]
    median_grad: np.ndarray
    saturation: dict[str, float]
    dead_fraction: dict[str, float]

    @classmethod
    def from_run(cls, history: list[dict[str, float]], stats: dict[str, Any] | None = None, *,
                 kind: str = "multiclass", baseline: dict[str, float] | None = None,
                 early_stopped_at: int | None = None, restore_best: bool = True) -> Evidence:
        """The evidence of one run; the arguments are `diagnose`'s."""
        stats, baseline = stats or {}, baseline or {}
        train = np.array([h.get("train/loss", np.nan) for h in history], dtype=float)
        val = np.array([h.get("val/loss", np.nan) for h in history], dtype=float)
        finite = train[np.isfinite(train)]
        bad = stats.get("non_finite_epoch") or next((i + 1 for i, v in enumerate(train) if not math.isfinite(v)), None)
        jumps = np.zeros(max(len(finite) - 1, 0), bool)
        if len(finite) >= 3:
            scale = np.percentile(finite, 75) - finite.min()  # robust: one huge first epoch does not hide the rest
            if scale > 0.05 * np.median(finite):
                jumps = np.diff(finite) > 0.1 * scale
        norms = np.array(stats.get("grad_norms") or [], dtype=float)
        norms = norms if norms.ndim == 2 and norms.size else np.zeros((0, 0))
        med = np.zeros(0)
        if norms.shape[1] >= 2:
            with warnings.catch_warnings():  # a tensor without one positive norm has no median: NaN, said quietly
                warnings.simplefilter("ignore", RuntimeWarning)
                med = np.nanmedian(np.where(norms > 0, norms, np.nan), axis=0)
        return cls(history=tuple(history), kind=kind, metric="r2" if kind == "regression" else "accuracy",
                   baseline_loss=baseline.get("loss"), baseline_metric=baseline.get("metric"),
                   early_stopped_at=early_stopped_at, restore_best=restore_best, train=train, val=val,
                   finite=finite, non_finite_epoch=bad, jumps=jumps, grad_norms=norms,
                   weight_names=tuple(stats.get("weight_names") or ()), median_grad=med,
                   saturation=dict(stats.get("saturation") or {}), dead_fraction=dict(stats.get("dead_fraction") or {}))

    @property
    def oscillates(self) -> bool:
        """At least six finite epochs, and the loss jumped up in at least 30% of the steps."""
        return len(self.finite) >= 6 and self.jumps.mean() >= 0.3

    @property
    def never_below_baseline(self) -> bool:
        """The best finite training loss is still worse than a constant prediction's."""
        return self.baseline_loss is not None and len(self.finite) > 0 and self.finite.min() > self.baseline_loss


def _steps(values: list[float], **kw: Any) -> Evidence:
    return Evidence.from_run([{"train/loss": v} for v in values], **kw)


def non_finite_loss(ev: Evidence) -> Outcome:
    """The training loss became NaN/inf (the tracker stopped the run and kept the last good weights).

    >>> non_finite_loss(_steps([1.0, float("nan")]))["evidence"].split(";")[0]
    'the training loss became NaN/inf in epoch 2'
    """
    if ev.non_finite_epoch:
        kept = (f"the weights of epoch {ev.non_finite_epoch - 1} were kept" if ev.non_finite_epoch > 1 else
                "no epoch had a finite loss, so no weights were kept and the run failed")
        return finding("non_finite_loss", "error", f"the training loss became NaN/inf in epoch {ev.non_finite_epoch}; "
                       f"training stopped and {kept}",
                       "lower the learning rate (--lr), clip gradients (--clip-norm 1.0), check inputs for NaN/inf")
    return None


def lr_diverges(ev: Evidence) -> Outcome:
    """``lr_too_high`` from divergence: the loss became non-finite (error), or it ended above where it
    started after at least doubling its minimum (warning).

    >>> lr_diverges(_steps([1.0, 0.9, 2.5]))["evidence"]
    'the training loss rose from 1 (epoch 1) to 2.5 (epoch 3): training diverges'
    """
    f, bad = ev.finite, ev.non_finite_epoch
    if not (bad or (len(f) >= 3 and f[-1] > f[0] and f.max() > 2 * f.min())):
        return None
    evidence = (f"the loss became non-finite in epoch {bad}" if bad else
                f"the training loss rose from {f[0]:.3g} (epoch 1) to {f[-1]:.3g} (epoch {len(f)})")
    return finding("lr_too_high", "error" if bad else "warning", evidence + ": training diverges",
                   "lower the learning rate 3-10x, or run the LR finder; add --clip-norm 1.0")


def lr_stalls(ev: Evidence) -> Outcome:
    """``lr_too_high`` without divergence: the loss never got below a constant prediction's, or it oscillates.

    >>> lr_stalls(_steps([1.0, 2.0, 1.0, 2.0, 1.0, 2.0]))["evidence"]
    'the training loss jumped up in 3 of 5 epochs: it oscillates'
    """
    if len(ev.finite) < 3 or not (ev.never_below_baseline or ev.oscillates):
        return None
    parts = []
    if ev.never_below_baseline:
        parts.append(f"the training loss never got below {ev.baseline_loss:.3g}, what a constant prediction scores "
                     f"(best {ev.finite.min():.3g})")
    if ev.oscillates:
        parts.append(f"the training loss jumped up in {int(ev.jumps.sum())} of {len(ev.jumps)} epochs: it oscillates")
    return finding("lr_too_high", "warning", "; ".join(parts),
                   "lower the learning rate 3-10x (or run the LR finder), or decay it (--schedule cosine)")


def lr_too_low(ev: Evidence) -> Outcome:
    """The finite training loss moved by under 5% in at least five epochs and stays above half the baseline.

    >>> lr_too_low(_steps([2.3, 2.3, 2.29, 2.29, 2.29]))["evidence"]
    'the training loss moved by 0.4% in 5 epochs (2.3 -> 2.29)'
    """
    f = ev.finite
    if len(f) < 5 or ev.non_finite_epoch:
        return None
    drop = (f[0] - f.min()) / abs(f[0]) if f[0] else 0.0
    high = ev.baseline_loss is None or f[-1] > 0.5 * ev.baseline_loss
    if drop < 0.05 and high:
        return finding("lr_too_low", "warning", f"the training loss moved by {100 * drop:.1f}% in {len(f)} epochs "
                       f"({f[0]:.4g} -> {f.min():.4g})", "raise the learning rate 3-10x (or run the LR finder); check "
                       "that the optimizer gets the model's parameters")
    return None


def underfitting(ev: Evidence) -> Outcome:
    """The last train metric is within 20% of the way from the trivial baseline to perfect, or the last
    training loss is above 80% of the baseline's.

    >>> rows = [{"train/loss": 2.2, "train/accuracy": 0.15}]
    >>> underfitting(Evidence.from_run(rows, baseline={"metric": 0.1, "loss": 2.3}))["evidence"]
    "train accuracy 0.150 is close to the trivial baseline's 0.100 (train loss 2.2 vs the baseline's 2.3)"
    """
    value, base, base_loss = ev.history[-1].get(f"train/{ev.metric}"), ev.baseline_metric, ev.baseline_loss
    if value is None or base is None or ev.non_finite_epoch:
        return None
    if value < base + 0.2 * (1.0 - base) or (base_loss and ev.finite.size and ev.finite[-1] > 0.8 * base_loss):
        return finding("underfitting", "warning",
                       f"train {ev.metric} {value:.3f} is close to the trivial baseline's {base:.3f} (train loss "
                       f"{ev.finite[-1]:.3g}" + (f" vs the baseline's {base_loss:.3g})" if base_loss else ")"),
                       "make the model bigger (more/wider layers), raise the learning rate, train longer, and reduce "
                       "regularization (dropout, weight decay)")
    return None


def overfitting(ev: Evidence) -> Outcome:
    """The validation loss rose >10% above its best for 3+ epochs while the training loss kept falling, or
    the kept epoch's train metric beats validation by over 0.1 (0.2 for R²). ``info`` when early stopping
    restored the best weights and there is no gap. (`resolve` drops it for a run that did not learn.)

    >>> rows = [{"train/loss": 1 - 0.1 * e, "val/loss": [1.0, 0.5, 0.6, 0.7, 0.8][e]} for e in range(5)]
    >>> overfitting(Evidence.from_run(rows))["evidence"]
    'validation loss rose from 0.5 (epoch 2) to 0.8 while the training loss kept falling'
    """
    val, history = ev.val, ev.history
    if not np.isfinite(val).any():
        return None
    best = ev.early_stopped_at - 1 if ev.early_stopped_at else int(np.nanargmin(val))
    rising = val[-1] > 1.1 * val[best] and len(history) - 1 - best >= 3 and ev.train[-1] < ev.train[best]
    kept = history[best] if ev.early_stopped_at and ev.restore_best else history[-1]  # the weights the run keeps
    m = ev.metric
    gap = kept.get(f"train/{m}", np.nan) - kept.get(f"val/{m}", np.nan)
    big_gap = math.isfinite(gap) and gap > (0.2 if ev.kind == "regression" else 0.1)
    if not (rising or big_gap):
        return None
    why = (f"validation loss rose from {val[best]:.3g} (epoch {best + 1}) to {val[-1]:.3g} while the training "
           "loss kept falling" if rising else "")
    if big_gap:
        why += ("; " if why else "") + (f"train {m} {kept[f'train/{m}']:.3f} vs validation {kept[f'val/{m}']:.3f} "
                                        f"at epoch {history.index(kept) + 1}")
    caught = ev.early_stopped_at is not None and ev.restore_best and not big_gap
    return finding("overfitting", "info" if caught else "warning",
                   why + (f"; early stopping kept epoch {ev.early_stopped_at}'s weights" if caught else ""),
                   f"the best epoch was {best + 1}: keep early stopping on; add dropout (--dropout 0.3), weight decay "
                   "(--weight-decay 1e-4) or an L2 penalty, augmentation, or more data; or use a smaller model")


def stopped_too_early(ev: Evidence) -> Outcome:
    """Early stopping ended the run while the validation metric (accuracy, R²) was still improving: its best came
    after the epoch the stopper kept, by more than 0.005, within the run's last 3 epochs. Typical when the
    stopper watches a noisy or over-confident validation loss while accuracy still climbs.

    >>> rows = [{"train/loss": 1 - 0.05 * e, "val/loss": [0.9, 0.7, 0.75, 0.8, 0.85][e],
    ...          "val/accuracy": [0.6, 0.7, 0.72, 0.74, 0.75][e]} for e in range(5)]
    >>> stopped_too_early(Evidence.from_run(rows, early_stopped_at=2))["evidence"]
    'early stopping ended the run after epoch 5 and kept epoch 2, but val/accuracy was still improving: 0.7 at epoch 2, 0.75 at epoch 5'
    """
    kept, m = ev.early_stopped_at, f"val/{ev.metric}"
    if not kept or kept > len(ev.history) or m not in ev.history[kept - 1]:
        return None
    values = np.array([h.get(m, np.nan) for h in ev.history], dtype=float)
    if not np.isfinite(values).any():
        return None
    best = int(np.nanargmax(values))
    if best + 1 <= kept or values[best] - values[kept - 1] <= 0.005 or len(values) - best > 3:
        return None
    return finding("stopped_too_early", "warning",
                   f"early stopping ended the run after epoch {len(values)} and kept epoch {kept}, but {m} was still "
                   f"improving: {values[kept - 1]:.3g} at epoch {kept}, {values[best]:.3g} at epoch {best + 1}",
                   f"stop on what you care about (--monitor {m}), give it more patience (--patience 20), or train the "
                   "whole budget on a decaying schedule (--schedule cosine); the weights kept are the earlier, less "
                   f"accurate epoch {kept}'s")


def vanishing_gradients(ev: Evidence) -> Outcome:
    """The first weight tensor's median gradient norm is over 1000x smaller than the last one's.

    >>> stats = {"weight_names": ["a", "b"], "grad_norms": [[1e-5, 1e-1]]}
    >>> vanishing_gradients(Evidence.from_run([{"train/loss": 2.3}], stats))["evidence"]
    "the first layer's gradient norm (a: 1.00e-05) is 1e+04x smaller than the last layer's (b: 1.00e-01)"
    """
    med, names = ev.median_grad, ev.weight_names
    if med.size and np.isfinite(med[0]) and np.isfinite(med[-1]) and med[-1] > 0 and med[0] / med[-1] < 1e-3:
        return finding("vanishing_gradients", "warning",
                       f"the first layer's gradient norm ({names[0]}: {med[0]:.2e}) is {med[-1] / med[0]:.0e}x smaller "
                       f"than the last layer's ({names[-1]}: {med[-1]:.2e})",
                       "use ReLU-family activations (--activation relu), He/Xavier initialization (--init kaiming), "
                       "batch norm (--batch-norm), fewer layers, or skip connections: a residual model (--model "
                       "resmlp:128,4 for an MLP, resnet:16,32,64 for images)")
    return None


def exploding_gradients(ev: Evidence) -> Outcome:
    """A sampled gradient norm is NaN/inf (error) or above 1000 (warning); needs two or more weight tensors.

    >>> exploding_gradients(Evidence.from_run([{"train/loss": 1.0}], {"grad_norms": [[5e3, 1.0]]}))["evidence"]
    "a layer's gradient norm reached 5e+03"
    """
    norms = ev.grad_norms
    if norms.shape[1] < 2:
        return None
    worst = np.nanmax(norms) if np.isfinite(norms).any() else math.inf
    if np.isfinite(norms).all() and worst <= 1e3:
        return None
    return finding("exploding_gradients", "error" if not np.isfinite(norms).all() else "warning",
                   f"a layer's gradient norm reached {worst:.3g}" if math.isfinite(worst)
                   else "a gradient became NaN/inf",
                   "clip gradients (--clip-norm 1.0), lower the learning rate, use batch norm, "
                   "check the weight initialization (--init kaiming/xavier)")


def saturated_activations(ev: Evidence) -> Outcome:
    """``vanishing_gradients`` from activations: over half of a sigmoid/tanh layer's outputs are saturated.

    >>> ev = Evidence.from_run([{"train/loss": 1.0}], {"saturation": {"3": 0.8}})
    >>> saturated_activations(ev)["evidence"].split(" are")[0]
    "80% of the outputs of activation layer '3'"
    """
    sat = {k: v for k, v in ev.saturation.items() if v > 0.5}
    if not sat:
        return None
    layer, frac = max(sat.items(), key=lambda kv: kv[1])
    return finding("vanishing_gradients", "warning", f"{100 * frac:.0f}% of the outputs of activation layer '{layer}' "
                   "are saturated (near the flat ends of the sigmoid/tanh)",
                   "use ReLU-family activations, standardize inputs, use batch norm or smaller initial weights")


def dead_units(ev: Evidence) -> Outcome:
    """At least 20% of a ReLU layer's units never fired on the sampled batches (warning from 50%).

    >>> dead_units(Evidence.from_run([{"train/loss": 1.0}], {"dead_fraction": {"2": 0.3}}))["severity"]
    'info'
    """
    if not ev.dead_fraction:
        return None
    layer, frac = max(ev.dead_fraction.items(), key=lambda kv: kv[1])
    if frac < 0.2:
        return None
    return finding("dead_units", "warning" if frac >= 0.5 else "info",
                   f"{100 * frac:.0f}% of the ReLU units of layer '{layer}' never fired on the sampled batches",
                   "lower the learning rate, use --activation leaky_relu or gelu, --init kaiming, or batch norm")


Rule = Callable[[Any], Outcome]
# Report order. Rules that share a code come strongest evidence first (see `resolve`, step 1).
RULES: tuple[Rule, ...] = (non_finite_loss, lr_diverges, lr_stalls, lr_too_low, underfitting, overfitting, stopped_too_early,
                           vanishing_gradients, exploding_gradients, saturated_activations, dead_units)


def run_rules(ev: Any, rules: tuple[Rule, ...] = RULES) -> list[tuple[str, Finding]]:
    """Every finding of every rule, in registry order, as ``(rule name, finding)``.

    >>> run_rules(_steps([1.0, float("inf")]), (non_finite_loss, lr_diverges))[1][0]
    'lr_diverges'
    """
    out = []
    for rule in rules:
        result = rule(ev)
        for f in [result] if isinstance(result, dict) else result or []:
            out.append((rule.__name__, f))
    return out


_STALL_VERDICTS = {"lr_stalls", "lr_too_low"}
_EXPLAINED_UNDERFITTING = ("fix the vanishing gradients first (see vanishing_gradients): more layers or a higher "
                           "learning rate cannot help while the first layers get almost no gradient; then, if it "
                           "still underfits, train longer and reduce regularization (dropout, weight decay)")


def resolve(ev: Evidence, found: list[tuple[str, Finding]]) -> list[Finding]:
    """Settle the conflicts between run findings, in this order, and return them in registry order:

    1. One finding per code: rules that share a code are registered strongest evidence first (`lr_diverges`
       before `lr_stalls`, gradient norms before `saturated_activations`); only the first is kept.
    2. Nothing to overfit: a run that did not learn (``non_finite_loss``, ``lr_too_high`` or ``underfitting``
       found) gets no ``overfitting``.
    3. Vanishing gradients explain a stall: with ``vanishing_gradients``, the learning-rate stall verdicts
       (``lr_too_low``, and ``lr_too_high`` from `lr_stalls`: never below the baseline / oscillating) are
       dropped: no learning rate moves layers that get no gradient. A divergence (`lr_diverges`) stays, it
       is a fault of its own. ``underfitting`` stays, it is the outcome seen, not a rival cause; its evidence
       names the cause and its advice (more layers, a higher rate) is replaced by "fix the gradients first".
    4. ``lr_too_high`` and ``lr_too_low`` never both: ``lr_too_high`` wins when the loss diverged or
       oscillates (too small a step does neither); when its only evidence is "never got below the
       baseline", ``lr_too_low`` wins: a loss that barely moved from where it started is stuck, not thrown.

    >>> ev = Evidence.from_run([{"train/loss": 2.31}] * 6, {"weight_names": ["a", "b"], "grad_norms": [[1e-5, 0.1]]},
    ...                        baseline={"metric": 0.1, "loss": 2.3})
    >>> [f["code"] for f in resolve(ev, run_rules(ev))]
    ['vanishing_gradients']
    """
    kept, codes = [], set()
    for rule, f in found:  # 1
        if f["code"] not in codes:
            codes.add(f["code"])
            kept.append((rule, f))
    if codes & {"non_finite_loss", "lr_too_high", "underfitting"}:  # 2
        kept = [(r, f) for r, f in kept if f["code"] != "overfitting"]
    if "vanishing_gradients" in codes:  # 3
        kept = [(r, f) for r, f in kept if r not in _STALL_VERDICTS]
        kept = [(r, finding(f["code"], f["severity"], f["evidence"] + "; vanishing gradients explain it",
                            _EXPLAINED_UNDERFITTING) if r == "underfitting" else f) for r, f in kept]
    rules = {r for r, _ in kept}
    if {"lr_too_low"} <= rules and rules & {"lr_diverges", "lr_stalls"}:  # 4
        loser = "lr_too_low" if "lr_diverges" in rules or ev.oscillates else "lr_stalls"
        kept = [(r, f) for r, f in kept if r != loser]
    return [f for _, f in kept]


# ----------------------------------------------------------------------------------------------------------- data
REPEATED_INPUTS = 4  # training inputs repeating this often on average make a small, discrete input space


def _rows(a: np.ndarray) -> np.ndarray:
    """One flat row per sample (targets included), for hashing."""
    a = np.ascontiguousarray(a)
    return a.reshape(len(a), -1)


@dataclass(frozen=True, eq=False)
class DataEvidence:
    """What the data rules look at: per split the input rows and the targets, each flattened to one row
    per sample, and the training rows per class (classification only, else empty).

    >>> ev = DataEvidence.from_arrays({"train": (np.zeros((4, 2, 2)), np.array([0, 0, 1, 1]))}, "classification")
    >>> ev.inputs["train"].shape, ev.class_counts.tolist()
    ((4, 4), [2, 2])
    """
    task: str
    class_names: tuple[str, ...] | None
    class_counts: np.ndarray
    inputs: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]

    @classmethod
    def from_arrays(cls, arrays: dict[str, tuple[np.ndarray, np.ndarray]], task: str,
                    class_names: list[str] | None = None) -> DataEvidence:
        """The evidence of a data set; the arguments are `data_checks`'."""
        counts = (np.bincount(np.asarray(arrays["train"][1]).astype(int))
                  if task == "classification" and "train" in arrays and np.ndim(arrays["train"][1]) == 1 else np.zeros(0, int))
        return cls(task=task, class_names=tuple(class_names) if class_names else None, class_counts=counts,
                   inputs={k: _rows(X) for k, (X, _) in arrays.items()},
                   targets={k: _rows(y) for k, (_, y) in arrays.items()})


def class_imbalance(ev: DataEvidence) -> Outcome:
    """The rarest training class has under 0.2x the rows of the most common one (warning under 0.05x).

    >>> ev = DataEvidence.from_arrays({"train": (np.zeros((10, 1)), np.array([0] * 9 + [1]))}, "classification")
    >>> class_imbalance(ev)["evidence"]
    "class '1' has 1 training rows, class '0' 9 (0.11:1)"
    """
    full = ev.class_counts
    counts = full[full > 0]
    if counts.size < 2 or counts.min() / counts.max() >= 0.2:
        return None
    names = ev.class_names or [str(i) for i in range(len(full))]
    lo, hi = int(np.argmin(np.where(full > 0, full, np.iinfo(int).max))), int(np.argmax(full))
    ratio = counts.min() / counts.max()
    return finding("class_imbalance", "warning" if ratio < 0.05 else "info",
                   f"class '{names[lo]}' has {full[lo]} training rows, class '{names[hi]}' {full[hi]} ({ratio:.2f}:1)",
                   "judge the model by per-class metrics, not accuracy alone; weight the loss by class or resample; "
                   "collect more rows of the rare class")


def train_test_overlap(ev: DataEvidence) -> Outcome:
    """Validation/test rows that are copies of training rows: one finding per split (warning above 1%).

    A copy is the same input row with the same target: a repeated input with another target is not
    leakage (the model cannot have memorized the answer). And when the training inputs repeat on average
    `REPEATED_INPUTS` (4) or more times each (distinct rows <= a quarter of the rows: a grid, a few
    categorical settings), shared rows across splits are the data's nature, not a leak; no finding then.
    Accidental duplicates (a row copied once or twice) stay far below that.

    >>> X = np.arange(20.0).reshape(10, 2); y = np.arange(10) % 2
    >>> train_test_overlap(DataEvidence.from_arrays({"train": (X, y), "test": (X[:4], y[:4])}, "x"))[0]["evidence"]
    '4 of 4 test rows (100.0%) are identical to training rows'
    >>> train_test_overlap(DataEvidence.from_arrays({"train": (X, y), "test": (X[:4], 1 - y[:4])}, "x"))
    []
    >>> grid = np.repeat(np.arange(10.0), 20)[:, None]  # 10 distinct inputs, 20 times each
    >>> labels = grid[:, 0] % 2
    >>> train_test_overlap(DataEvidence.from_arrays({"train": (grid, labels), "test": (grid[:5], labels[:5])}, "x"))
    []
    """
    if "train" not in ev.inputs:
        return []
    X, y = ev.inputs["train"], ev.targets["train"]
    if len(X) and REPEATED_INPUTS * len({r.tobytes() for r in X}) <= len(X):
        return []
    seen = {(r.tobytes(), t.tobytes()) for r, t in zip(X, y)}
    out = []
    for split in ("val", "test"):
        rows, targets = ev.inputs.get(split), ev.targets.get(split)
        if rows is None or not len(rows):
            continue
        shared = sum((r.tobytes(), t.tobytes()) in seen for r, t in zip(rows, targets))
        if shared:
            frac = shared / len(rows)
            out.append(finding("train_test_overlap", "warning" if frac > 0.01 else "info",
                               f"{shared} of {len(rows)} {split} rows ({100 * frac:.1f}%) are identical to training "
                               "rows",
                               f"{split} scores overstate performance on new data: drop duplicates before splitting "
                               "(or split by group, e.g. per patient/user)"))
    return out


DATA_RULES: tuple[Rule, ...] = (class_imbalance, train_test_overlap)
