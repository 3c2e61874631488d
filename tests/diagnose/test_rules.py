"""Each doctor rule fires on a tiny synthetic case and stays quiet on its near miss; the conflicts resolve."""
import numpy as np
import pytest

import trainwise
from trainwise.diagnose.doctor import SEVERITIES, data_checks, diagnose
from trainwise.diagnose.rules import (
    DATA_RULES,
    RULES,
    DataEvidence,
    Evidence,
    class_imbalance,
    dead_units,
    exploding_gradients,
    lr_diverges,
    lr_stalls,
    lr_too_low,
    non_finite_loss,
    overfitting,
    resolve,
    run_rules,
    saturated_activations,
    stopped_too_early,
    train_test_overlap,
    underfitting,
    vanishing_gradients,
)

NAN = float("nan")
BASE = {"metric": 0.1, "loss": 2.3}  # ten balanced classes


def ev(losses, stats=None, **kw):
    return Evidence.from_run([{"train/loss": v} for v in losses], stats, **kw)


def rows(train, val=None, acc=None, val_acc=None):
    out = []
    for e, t in enumerate(train):
        r = {"train/loss": t}
        if val is not None:
            r["val/loss"] = val[e]
        if acc is not None:
            r["train/accuracy"], r["val/accuracy"] = acc[e], val_acc[e]
        out.append(r)
    return out


def grads(first, last, epochs=3):
    return {"weight_names": ["1.weight", "4.weight", "7.weight"], "grad_norms": [[first, 1e-3, last]] * epochs}


def check(f, code, severity, *words):
    assert f is not None and f["code"] == code and f["severity"] == severity, f
    assert set(f) == {"code", "severity", "evidence", "advice"}
    for w in words:
        assert w in f["evidence"], (w, f["evidence"])


def test_registry_order_and_names():
    assert [r.__name__ for r in RULES] == ["non_finite_loss", "lr_diverges", "lr_stalls", "lr_too_low", "underfitting",
                                          "overfitting", "stopped_too_early", "vanishing_gradients", "exploding_gradients",
                                          "saturated_activations", "dead_units"]
    assert [r.__name__ for r in DATA_RULES] == ["class_imbalance", "train_test_overlap"]


def test_evidence_is_built_once_and_frozen():
    e = ev([3.0, NAN, 1.0, 2.0], grads(1e-5, 1e-1))
    assert e.finite.tolist() == [3.0, 1.0, 2.0] and e.non_finite_epoch == 2
    assert e.median_grad.tolist() == pytest.approx([1e-5, 1e-3, 1e-1])
    assert e.weight_names == ("1.weight", "4.weight", "7.weight")
    with pytest.raises(AttributeError):
        e.kind = "regression"


def test_non_finite_loss():
    check(non_finite_loss(ev([1.0, 0.9, NAN])), "non_finite_loss", "error", "NaN/inf in epoch 3", "the weights of epoch 2 were kept")
    check(non_finite_loss(ev([1.0], {"non_finite_epoch": 4})), "non_finite_loss", "error", "epoch 4")
    assert non_finite_loss(ev([1.0, 0.9, 0.8])) is None


def test_lr_diverges():
    check(lr_diverges(ev([1.0, 0.9, 2.5])), "lr_too_high", "warning", "rose from 1 (epoch 1) to 2.5 (epoch 3)",
          "training diverges")
    check(lr_diverges(ev([1.0, NAN])), "lr_too_high", "error", "non-finite in epoch 2")
    assert lr_diverges(ev([1.0, 0.9, 1.1])) is None  # ended higher, but never doubled its minimum
    assert lr_diverges(ev([1.0, 0.5, 0.4])) is None


def test_lr_stalls():
    check(lr_stalls(ev([2.5, 2.4, 2.45], baseline=BASE)), "lr_too_high", "warning", "never got below 2.3", "(best 2.4)")
    f = lr_stalls(ev([1.0, 2.0, 1.0, 2.0, 1.0, 2.0]))
    check(f, "lr_too_high", "warning", "jumped up in 3 of 5 epochs", "oscillates")
    assert "never got below" not in f["evidence"]
    assert lr_stalls(ev([2.5, 2.0, 1.5], baseline=BASE)) is None  # got below the baseline
    assert lr_stalls(ev([2.0, 2.01, 2.0, 2.01, 2.0, 2.01])) is None  # flat noise is not an oscillation
    assert lr_stalls(ev([2.5, 2.4], baseline=BASE)) is None  # too few epochs


def test_lr_too_low():
    check(lr_too_low(ev([2.3, 2.3, 2.29, 2.29, 2.29])), "lr_too_low", "warning", "moved by 0.4% in 5 epochs",
          "2.3 -> 2.29")
    assert lr_too_low(ev([2.3, 2.0, 1.5, 1.2, 1.0])) is None  # it learns
    assert lr_too_low(ev([2.3, 2.3, 2.3, 2.3])) is None  # too few epochs
    assert lr_too_low(ev([0.5] * 5, baseline=BASE)) is None  # flat, but far below the baseline: converged
    assert lr_too_low(ev([2.3] * 4 + [NAN, 2.3])) is None  # a non-finite run is lr_too_high's business


def test_underfitting():
    f = underfitting(Evidence.from_run(rows([2.3, 2.2], acc=[0.1, 0.15], val_acc=[0.1, 0.1]), baseline=BASE))
    check(f, "underfitting", "warning", "train accuracy 0.150", "baseline's 0.100",
          "train loss 2.2 vs the baseline's 2.3")
    assert "bigger" in f["advice"]
    assert underfitting(Evidence.from_run(rows([2.3, 0.4], acc=[0.1, 0.9], val_acc=[0.1, 0.88]), baseline=BASE)) is None
    assert underfitting(Evidence.from_run(rows([2.3, 2.2], acc=[0.1, 0.15], val_acc=[0.1, 0.1]))) is None  # no baseline


def test_overfitting():
    val = [1.0, 0.5, 0.6, 0.7, 0.8]
    f = overfitting(Evidence.from_run(rows([1.0, 0.9, 0.8, 0.7, 0.6], val)))
    check(f, "overfitting", "warning", "rose from 0.5 (epoch 2) to 0.8", "training loss kept falling")
    assert "the best epoch was 2" in f["advice"]
    caught = overfitting(Evidence.from_run(rows([1.0, 0.9, 0.8, 0.7, 0.6], val), early_stopped_at=2))
    check(caught, "overfitting", "info", "early stopping kept epoch 2's weights")
    gap = overfitting(Evidence.from_run(rows([1.0, 0.5, 0.3], [1.0, 0.6, 0.5], [0.5, 0.9, 0.99], [0.5, 0.7, 0.7])))
    check(gap, "overfitting", "warning", "train accuracy 0.990 vs validation 0.700 at epoch 3")
    assert overfitting(Evidence.from_run(rows([1.0, 0.8, 0.6, 0.5, 0.4], [1.0, 0.8, 0.6, 0.5, 0.45]))) is None
    assert overfitting(ev([1.0, 0.5, 0.3])) is None  # no validation


def test_stopped_too_early():
    # the case: val/loss turns up (over-confidence) at epoch 2 while val/accuracy climbs to the end
    train, val = [1.0, 0.8, 0.7, 0.6, 0.5, 0.4], [0.9, 0.7, 0.72, 0.75, 0.8, 0.85]
    acc = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9]
    f = stopped_too_early(Evidence.from_run(rows(train, val, acc, [0.6, 0.70, 0.72, 0.74, 0.76, 0.78]), early_stopped_at=2))
    check(f, "stopped_too_early", "warning", "kept epoch 2", "val/accuracy was still improving: 0.7 at epoch 2, 0.78 at epoch 6")
    assert "--monitor val/accuracy" in f["advice"] and "--patience" in f["advice"]
    # near misses: accuracy peaked before the stop's last 3 epochs; gained no more than 0.005; no early stop
    assert stopped_too_early(Evidence.from_run(rows(train, val, acc, [0.6, 0.7, 0.8, 0.75, 0.74, 0.73]), early_stopped_at=2)) is None
    assert stopped_too_early(Evidence.from_run(rows(train, val, acc, [0.6, 0.7, 0.7, 0.702, 0.703, 0.704]), early_stopped_at=2)) is None
    assert stopped_too_early(Evidence.from_run(rows(train, val, acc, [0.6, 0.70, 0.72, 0.74, 0.76, 0.78]))) is None
    # regression: R² is the metric watched
    reg = [{"train/loss": 1.0, "val/loss": 1.0, "val/r2": r} for r in (0.5, 0.6, 0.58, 0.62, 0.65)]
    check(stopped_too_early(Evidence.from_run(reg, kind="regression", early_stopped_at=2)), "stopped_too_early", "warning",
          "val/r2 was still improving: 0.6 at epoch 2, 0.65 at epoch 5")


def test_vanishing_gradients():
    check(vanishing_gradients(ev([2.3], grads(1e-5, 1e-1))), "vanishing_gradients", "warning",
          "(1.weight: 1.00e-05) is 1e+04x smaller than the last layer's (7.weight: 1.00e-01)")
    assert vanishing_gradients(ev([2.3], grads(1e-2, 1e-1))) is None
    assert vanishing_gradients(ev([2.3], {"weight_names": ["a"], "grad_norms": [[1e-9]]})) is None  # one tensor
    assert vanishing_gradients(ev([2.3], grads(0.0, 1e-1))) is None  # never a positive norm: nothing to compare


def test_exploding_gradients():
    check(exploding_gradients(ev([1.0], grads(5e3, 1.0))), "exploding_gradients", "warning", "reached 5e+03")
    check(exploding_gradients(ev([1.0], grads(float("inf"), 1.0))), "exploding_gradients", "error",
          "a gradient became NaN/inf")
    check(exploding_gradients(ev([1.0], {"grad_norms": [[NAN, NAN]]})), "exploding_gradients", "error",
          "a gradient became NaN/inf")
    assert exploding_gradients(ev([1.0], grads(10.0, 1.0))) is None


def test_saturated_activations():
    check(saturated_activations(ev([1.0], {"saturation": {"3": 0.8, "5": 0.6}})), "vanishing_gradients", "warning",
          "80% of the outputs of activation layer '3' are saturated")
    assert saturated_activations(ev([1.0], {"saturation": {"3": 0.4}})) is None


def test_dead_units():
    check(dead_units(ev([1.0], {"dead_fraction": {"2": 0.8, "5": 0.1}})), "dead_units", "warning",
          "80% of the ReLU units of layer '2'")
    check(dead_units(ev([1.0], {"dead_fraction": {"2": 0.3}})), "dead_units", "info", "30%")
    assert dead_units(ev([1.0], {"dead_fraction": {"2": 0.1}})) is None


def data(arrays, task="classification", names=None):
    return DataEvidence.from_arrays(arrays, task, names)


def test_class_imbalance():
    X = np.zeros((100, 2))
    check(class_imbalance(data({"train": (X, np.array([0] * 98 + [1] * 2))}, names=["no", "yes"])), "class_imbalance",
          "warning", "class 'yes' has 2 training rows, class 'no' 98 (0.02:1)")
    check(class_imbalance(data({"train": (X, np.array([0] * 90 + [1] * 10))})), "class_imbalance", "info", "(0.11:1)")
    check(class_imbalance(data({"train": (X, np.array([0] * 90 + [2] * 10))})), "class_imbalance", "info",
          "class '2' has 10")  # a label missing in between
    assert class_imbalance(data({"train": (X, np.array([0] * 60 + [1] * 40))})) is None
    assert class_imbalance(data({"train": (X, np.linspace(0, 1, 100))}, "regression")) is None


def test_train_test_overlap_counts_copies_of_unique_rows():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 3)), rng.integers(0, 2, 100)
    found = train_test_overlap(data({"train": (X[:80], y[:80]), "val": (X[80:], y[80:]),
                                     "test": (np.vstack([X[:5], X[90:]]), np.concatenate([y[:5], y[90:]]))}))
    assert len(found) == 1
    check(found[0], "train_test_overlap", "warning", "5 of 15 test rows (33.3%) are identical to training rows")
    assert train_test_overlap(data({"train": (X[:80], y[:80]), "test": (X[80:], y[80:])})) == []


def test_a_repeated_input_with_another_target_is_no_copy():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 3)), rng.normal(size=100)
    assert train_test_overlap(data({"train": (X, y), "test": (X[:10], y[:10] + 1.0)}, "regression")) == []
    half = np.concatenate([y[:5], y[5:10] + 1.0])  # five copies, five repeated inputs with new targets
    check(train_test_overlap(data({"train": (X, y), "test": (X[:10], half)}, "regression"))[0], "train_test_overlap",
          "warning", "5 of 10 test rows")


def test_grid_data_repeats_by_nature():
    rng = np.random.default_rng(0)
    grid = np.repeat(np.arange(10.0), 20)[:, None]  # 10 distinct inputs, 20 times each
    labels = rng.integers(0, 3, 200)  # the same (input, label) pairs recur on both sides by chance
    perm = rng.permutation(200)
    tr, te = perm[:150], perm[150:]
    assert data_checks({"train": (grid[tr], labels[tr]), "test": (grid[te], labels[te])}, "classification") == []
    noisy = rng.normal(size=200)
    assert data_checks({"train": (grid[tr], noisy[tr]), "test": (grid[te], noisy[te])}, "regression") == []
    # the threshold: 4 copies of each input on average is a small input space, 3 are (accidental) duplicates
    four, three = np.repeat(np.arange(10.0), 4)[:, None], np.repeat(np.arange(10.0), 3)[:, None]
    assert train_test_overlap(data({"train": (four, np.zeros(40)), "test": (four[:2], np.zeros(2))})) == []
    assert train_test_overlap(data({"train": (three, np.zeros(30)), "test": (three[:2], np.zeros(2))}))[0][
        "evidence"].startswith("2 of 2 test rows")


def codes(found):
    return [f["code"] for f in found]


def test_resolve_keeps_one_finding_per_code():
    e = ev([1.0, NAN], {"weight_names": ["a", "b"], "grad_norms": [[1e-5, 1e-1]], "saturation": {"3": 0.9}})
    raw = run_rules(e)
    assert [r for r, _ in raw] == ["non_finite_loss", "lr_diverges", "vanishing_gradients", "saturated_activations"]
    out = resolve(e, raw)
    assert codes(out) == ["non_finite_loss", "lr_too_high", "vanishing_gradients"]
    assert "gradient norm" in out[2]["evidence"] and out[1]["severity"] == "error"  # the divergence stays


def test_resolve_drops_overfitting_of_a_run_that_did_not_learn():
    history = rows([2.6, 2.5, 2.45, 2.42, 2.4], [2.3, 2.2, 2.4, 2.5, 2.6])  # never below the baseline's 2.3
    e = Evidence.from_run(history, baseline=BASE)
    assert [r for r, _ in run_rules(e)] == ["lr_stalls", "overfitting"]
    assert codes(resolve(e, run_rules(e))) == ["lr_too_high"]


def test_deep_sigmoid_stall_is_vanishing_gradients_not_the_learning_rate():
    """The contradiction seen on mlp:32x10 --activation sigmoid on digits: a flat loss at the baseline and a
    first layer whose gradient is 10^4 times smaller than the last; it used to read lr too high AND too low."""
    losses = [2.3175, 2.3128, 2.3146, 2.3124, 2.3104, 2.3114, 2.3062, 2.3101, 2.3105, 2.307, 2.3125, 2.31]
    history = rows(losses, [2.303] * 12, [0.09] * 12, [0.1] * 12)
    stats = {"weight_names": ["1.weight", "4.weight", "31.weight"], "grad_norms": [[1e-5, 1e-3, 1e-1]] * 12,
             "saturation": {}, "dead_fraction": {}, "non_finite_epoch": None}
    e = Evidence.from_run(history, stats, baseline=BASE)
    assert {r for r, _ in run_rules(e)} >= {"lr_stalls", "lr_too_low", "underfitting", "vanishing_gradients"}
    out = diagnose(history, stats, baseline=BASE)
    assert codes(out) == ["underfitting", "vanishing_gradients"]
    under, vanish = out
    assert under["severity"] == "warning" and under["evidence"].startswith("train accuracy 0.090 is close")
    assert under["evidence"].endswith("vanishing gradients explain it")
    assert "fix the vanishing gradients first" in under["advice"] and "raise the learning rate" not in under["advice"]
    check(vanish, "vanishing_gradients", "warning", "1e+04x smaller")


def test_vanishing_gradients_keep_a_divergence():
    out = diagnose(rows([1.0, 0.9, 2.5]), grads(1e-5, 1e-1))
    assert codes(out) == ["lr_too_high", "vanishing_gradients"] and "diverges" in out[0]["evidence"]


def test_lr_too_high_and_too_low_never_together():
    tiny_lr = [2.3119, 2.3138, 2.3115, 2.3112, 2.3102, 2.308]  # lr 1e-6 on digits: stuck just above the baseline
    e = ev(tiny_lr, baseline=BASE)
    assert [r for r, _ in run_rules(e)] == ["lr_stalls", "lr_too_low"]
    assert codes(resolve(e, run_rules(e))) == ["lr_too_low"]
    oscillating = ev([2.0, 2.2, 1.98, 2.2, 1.98, 2.2])  # jumps, yet barely below where it started
    assert [r for r, _ in run_rules(oscillating)] == ["lr_stalls", "lr_too_low"]
    out = resolve(oscillating, run_rules(oscillating))
    assert codes(out) == ["lr_too_high"] and "oscillates" in out[0]["evidence"]
    diverging = ev([1.0, 0.99, 0.995, 0.99, 2.5])
    assert [r for r, _ in run_rules(diverging)] == ["lr_diverges", "lr_too_low"]
    assert codes(resolve(diverging, run_rules(diverging))) == ["lr_too_high"]


def test_every_finding_has_the_doctor_shape():
    history = rows([2.3, NAN], [2.3, 2.3], [0.1, 0.1], [0.1, 0.1])
    stats = {**grads(1e-6, 1e4), "saturation": {"1": 0.9}, "dead_fraction": {"2": 0.9}}
    out = diagnose(history, stats, baseline=BASE)
    assert codes(out) == ["non_finite_loss", "lr_too_high", "vanishing_gradients", "exploding_gradients", "dead_units"]
    assert all(set(f) == {"code", "severity", "evidence", "advice"} and f["severity"] in SEVERITIES for f in out)


def test_real_deep_sigmoid_run_reads_vanishing_gradients_only(tmp_path):
    r = trainwise.fit("digits", run_dir=tmp_path / "deep", quiet=True, checkpoint=False, epochs=12,
                      model="mlp:" + ",".join(["32"] * 10), activation="sigmoid")
    found = {d["code"]: d for d in r.summary["diagnostics"]}
    assert found["vanishing_gradients"]["severity"] == "warning"
    assert not {"lr_too_low", "lr_too_high"} & set(found)


def test_real_grid_regression_has_no_overlap(tmp_path):
    rng = np.random.default_rng(0)
    X = np.repeat(np.arange(10, dtype=np.float32), 20)[:, None]
    y = 0.5 * X[:, 0] + rng.normal(size=200)
    r = trainwise.fit(X, y=y, run_dir=tmp_path / "grid", quiet=True, checkpoint=False, epochs=2)
    assert r.summary["data"]["task"] == "regression" and r.summary["data"]["sizes"]["test"] > 10  # all inputs shared
    assert "train_test_overlap" not in {d["code"] for d in r.summary["diagnostics"]}
