"""Class probabilities as targets (soft targets): read from 2-D arrays whose rows sum to 1, trained on with
cross-entropy against the probabilities, measured against each row's most probable class."""
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import trainwise
from trainwise.config import RunConfig
from trainwise.data import from_arrays, prepare
from trainwise.errors import TrainwiseError
from trainwise.pipeline import setup_run
from trainwise.train.components import SampleWeighted, class_weights
from trainwise.train.distributed import check_distributed
from trainwise.vectorized import stack_reason


def _blobs(n=300, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = rng.normal(size=(n, 4)) + np.eye(k, 4)[y] * 2.5
    return X.astype(np.float32), y


def _soft(y, k, keep=0.7):
    return np.eye(k)[y] * keep + (1 - keep) / k


def test_rows_of_probabilities_are_soft_targets_with_their_most_probable_class_as_label():
    P = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3], [0.1, 0.1, 0.8]])
    raw = from_arrays(np.zeros((3, 2)), P)
    assert raw.y.tolist() == [1, 0, 2]
    np.testing.assert_allclose(raw.soft, P, rtol=1e-6)
    assert raw.soft.dtype == np.float32
    assert raw.notes == ["y holds class probabilities (3 classes, rows summing to 1): trained on them as soft targets "
                         "(cross-entropy); metrics, splits and the validation and test losses use each row's most probable class"]


def test_values_between_0_and_1_that_do_not_sum_to_1_are_refused_naming_the_row():
    with pytest.raises(TrainwiseError, match=re.escape("row 1 sums to 0.9), so they are neither class probabilities nor 0/1 labels")):
        from_arrays(np.zeros((2, 3)), np.array([[0.5, 0.5], [0.4, 0.5]]))


@pytest.mark.parametrize("class_weight", [None, torch.tensor([1.0, 3.0, 0.5])])
@pytest.mark.parametrize("weighted", [False, True])
def test_one_hot_probabilities_give_exactly_the_hard_label_loss(class_weight, weighted):
    out, y = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 2, 1, 0])
    w = torch.tensor([1.0, 0.5, 2.0, 0.0, 1.0, 3.0]) if weighted else None
    loss = SampleWeighted(nn.CrossEntropyLoss(weight=class_weight))
    hard = loss(out, (y, w)) if weighted else nn.CrossEntropyLoss(weight=class_weight)(out, y)
    soft = loss(out, (y, w, F.one_hot(y, 3).float()))
    torch.testing.assert_close(soft, hard)


def test_the_soft_loss_is_the_cross_entropy_against_the_probabilities_weighted_by_rows_and_classes():
    out = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.0, 0.5, 0.5]])
    w, cw = torch.tensor([1.0, 2.0, 0.5, 1.0]), torch.tensor([1.0, 2.0, 4.0])
    per_row = -(p * cw * out.log_softmax(-1)).sum(1)
    expected = (w * per_row).sum() / (w * (p @ cw)).sum()
    got = SampleWeighted(nn.CrossEntropyLoss(weight=cw))(out, (p.argmax(1), w, p))
    torch.testing.assert_close(got, expected)
    plain = SampleWeighted(nn.CrossEntropyLoss())(out, (p.argmax(1), None, p))
    torch.testing.assert_close(plain, -(p * out.log_softmax(-1)).sum(1).mean())


def test_training_batches_carry_the_probabilities_and_a_binary_problem_gets_the_positive_class():
    X, y = _blobs(k=2)
    P = _soft(y, 2)
    prep = prepare(from_arrays(X, P), seed=0)
    assert prep.task == "classification" and prep.target.classes == [0, 1]
    np.testing.assert_allclose(prep.soft, P[prep.indices["train"]], rtol=1e-6)
    batches = prep.batches(kind="binary", device=torch.device("cpu"), batch_size=50, seed=0)
    _, target = next(iter(batches["train"]))
    labels, w, p = target
    assert w is None and p.shape == (50, 1) and labels.shape == (50, 1)
    torch.testing.assert_close(p[:, 0], torch.where(labels[:, 0] > 0.5, 0.85, 0.15))
    _, val_target = next(iter(batches["val"]))
    assert isinstance(val_target, torch.Tensor)  # validation is measured against the labels


def test_fit_trains_on_the_probabilities_and_reports_against_the_most_probable_class(tmp_path):
    X, y = _blobs()
    P = _soft(y, 3)
    soft = trainwise.fit(X, P, epochs=4, run_dir=tmp_path / "soft", quiet=True)
    hard = trainwise.fit(X, y, epochs=4, run_dir=tmp_path / "hard", quiet=True)
    # the loss is another one (against 0.8/0.1/0.1 rows, it cannot fall below their entropy), the labels the same
    entropy = float(-(P * np.log(P)).sum(1).mean())
    assert min(h["train/loss"] for h in soft.history) > entropy > max(h["train/loss"] for h in hard.history[-1:])
    assert soft.summary["data"]["train_class_counts"] == hard.summary["data"]["train_class_counts"]
    means = soft.summary["data"]["train_class_probabilities"]
    indices = prepare(from_arrays(X, P), seed=0).indices  # the run's split (seed 0)
    train = P[indices["train"]]
    assert list(means) == ["0", "1", "2"] and list(means.values()) == pytest.approx(train.mean(0), abs=1e-6)
    # test accuracy: the saved model's predictions against each test row's most probable class
    model = trainwise.load(tmp_path / "soft")
    test_rows = indices["test"]
    accuracy = float((model.predict(X[test_rows]) == y[test_rows].astype(str)).mean())  # (labels named as in class_names)
    assert soft.summary["test"]["test/accuracy"] == pytest.approx(accuracy)
    assert json.loads((tmp_path / "soft" / "summary.json").read_text())["data"]["notes"][0].startswith("y holds class probabilities")


def test_balanced_class_weights_count_each_class_by_its_total_probability():
    P = np.array([[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.2, 0.2, 0.6], [1.0, 0.0, 0.0]])
    w = class_weights("balanced", P, ["a", "b", "c"])
    torch.testing.assert_close(w, torch.tensor(4 / (3 * np.array([2.6, 0.8, 0.6])), dtype=torch.float32))


def test_what_soft_targets_do_not_take_is_refused_or_run_one_by_one(tmp_path):
    X, y = _blobs()
    P = _soft(y, 3)
    with pytest.raises(TrainwiseError, match="y holds class probabilities .* but the task is regression"):
        trainwise.fit(X, P, task="regression", quiet=True, run_dir=tmp_path / "r")
    setup = setup_run(RunConfig(data="arrays", epochs=2), X, P)
    with pytest.raises(TrainwiseError, match=re.escape("does not take class probabilities as targets (soft targets; not sharded yet)")):
        check_distributed(setup.cfg, setup.prep)
    assert stack_reason([setup, setup]) == "training on class probabilities (soft targets) is not vectorized yet"
    r = trainwise.fit(X, P, epochs=2, restarts=2, run_dir=tmp_path / "restarts", quiet=True)
    assert len(r.summary["restarts"]["runs"]) == 2


def test_an_interrupted_run_resumes_exactly_and_only_with_the_same_probabilities(tmp_path):
    class CtrlC(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 2:
                raise KeyboardInterrupt

    X, y = _blobs()
    P = _soft(y, 3)
    opts = dict(epochs=4, quiet=True, early_stopping=False)
    full = trainwise.fit(X, P, run_dir=tmp_path / "full", **opts)
    part = trainwise.fit(X, P, run_dir=tmp_path / "part", callbacks=[CtrlC()], **opts)
    assert part.summary["status"] == "interrupted"
    with pytest.raises(TrainwiseError, match=r"targets \(soft targets\), but other were given now\. HINT: pass the same y"):
        trainwise.fit(X, _soft(y, 3, keep=0.5), resume=tmp_path / "part", quiet=True)
    with pytest.raises(TrainwiseError, match=r"was trained with class probabilities as targets \(soft targets\), but none were given now"):
        trainwise.fit(X, y, resume=tmp_path / "part", quiet=True)
    done = trainwise.fit(X, P, resume=tmp_path / "part", quiet=True)
    assert done.summary["status"] == "completed"
    drop = lambda h: [{k: v for k, v in row.items() if not k.startswith("time/")} for row in h]  # noqa: E731
    assert drop(done.history) == drop(full.history)


def test_a_dataframe_takes_probabilities_one_hot_rows_and_label_columns_as_y():
    import pandas as pd

    from trainwise.data import from_table

    X, y = _blobs(n=12)
    df = pd.DataFrame(X, columns=list("abcd"))
    df.loc[5, "b"] = np.nan
    P = _soft(y, 3)
    raw = from_table(df, P, missing="drop")
    keep = np.arange(12) != 5
    assert raw.y.tolist() == y[keep].tolist() and len(raw.X) == 11
    np.testing.assert_allclose(raw.soft, P[keep], rtol=1e-6)
    assert raw.notes[0].startswith("y holds class probabilities (3 classes")
    one_hot = from_table(df.drop(index=5), np.eye(3)[y[keep]])
    assert one_hot.soft is None and one_hot.y.tolist() == y[keep].tolist()
    labels = from_table(df.drop(index=5), np.array([[1, 1], [0, 1], [0, 0]] * 3 + [[1, 0]] * 2))
    assert labels.target_name == "label_0,label_1" and labels.y.shape == (11, 2)


def test_csv_columns_of_probabilities_are_soft_targets_with_task_classification(tmp_path):
    import pandas as pd

    X, y = _blobs(n=200)
    P = _soft(y, 3, keep=0.6)
    path = tmp_path / "votes.csv"
    pd.DataFrame(np.c_[X, P], columns=["a", "b", "c", "d", "cat", "dog", "bird"]).to_csv(path, index=False)
    r = trainwise.fit(data=str(path), target="cat,dog,bird", task="classification", model="mlp:16", epochs=2,
                      run_dir=tmp_path / "run", quiet=True)
    data = r.summary["data"]
    assert data["class_names"] == ["cat", "dog", "bird"]
    train = prepare(from_arrays(X, P), seed=0).indices["train"]  # the same stratified split as the file's
    assert data["train_class_counts"] == dict(zip(["cat", "dog", "bird"], np.bincount(y[train]).tolist()))
    assert "the target columns cat,dog,bird hold class probabilities" in " ".join(data["notes"])
    assert list(trainwise.load(tmp_path / "run").predict_proba(X[:2]).shape) == [2, 3]
    regression = prepare(trainwise.data.load_source(str(path), target="cat,dog,bird"))  # without --task: several values
    assert regression.task == "regression" and regression.soft is None


def test_cross_validation_and_evaluate_take_probabilities(tmp_path):
    from trainwise.tune.cv import cross_validate

    X, y = _blobs(n=120)
    P = _soft(y, 3)
    r = cross_validate(X, P, folds=2, epochs=1, quiet=True, run_dir=tmp_path / "cv")
    fold = json.loads((tmp_path / "cv" / "fold-1" / "summary.json").read_text())["data"]
    assert len(r.folds) == 2 and sorted(fold["train_class_probabilities"]) == ["0", "1", "2"]
    assert sum(fold["train_class_probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    np.savez(tmp_path / "soft.npz", X=X[:30], y=P[:30])
    np.savez(tmp_path / "hard.npz", X=X[:30], y=y[:30])
    scores = trainwise.evaluate(tmp_path / "cv" / "fold-1", str(tmp_path / "soft.npz"))
    assert set(scores) == {"eval/loss", "eval/accuracy"}
    assert trainwise.evaluate(tmp_path / "cv" / "fold-1", str(tmp_path / "hard.npz")) == scores  # the most probable class


def test_split_files_of_probabilities_train_on_them(tmp_path):
    X, y = _blobs(n=240)
    P = _soft(y, 3)
    np.savez(tmp_path / "train.npz", X=X[:180], y=P[:180])
    np.savez(tmp_path / "val.npz", X=X[180:], y=y[180:])  # labels in the validation file: measured on them as they are
    r = trainwise.fit(data=str(tmp_path / "train.npz"), val_data=str(tmp_path / "val.npz"), epochs=2, quiet=True,
                      run_dir=tmp_path / "run")
    data = r.summary["data"]
    assert "train_class_probabilities" in data and data["sizes"]["val"] == 60
    assert data["sizes"]["train"] + data["sizes"]["test"] == 180  # the test split carved from train.npz
    assert sum(data["train_class_probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    np.savez(tmp_path / "bad.npz", X=X[180:], y=np.full(60, 7))
    with pytest.raises(TrainwiseError, match=r"--val-data '.*bad.npz' holds labels that are not class indices 0..2"):
        trainwise.fit(data=str(tmp_path / "train.npz"), val_data=str(tmp_path / "bad.npz"), epochs=1, quiet=True,
                      run_dir=tmp_path / "bad")


def test_evaluate_and_cross_validation_take_csv_columns_of_probabilities(tmp_path):
    from trainwise.tune.cv import cross_validate

    X, y = _blobs(n=150)
    P = np.round(_soft(y, 3, keep=0.67), 2)  # as text with two decimals: rows sum to 0.99..1.01
    path = tmp_path / "votes.csv"
    pd.DataFrame(np.c_[X, P], columns=["a", "b", "c", "d", "cat", "dog", "bird"]).to_csv(path, index=False)
    opts = dict(target="cat,dog,bird", task="classification", model="mlp:16", epochs=1, quiet=True)
    trainwise.fit(data=str(path), run_dir=tmp_path / "run", **opts)
    scores = trainwise.evaluate(tmp_path / "run", str(path))
    model = trainwise.load(tmp_path / "run")
    frame = pd.read_csv(path)
    assert model.evaluate(frame) == scores == trainwise.evaluate(tmp_path / "run", X, P)
    assert scores["eval/accuracy"] == pytest.approx(float((model.predict(X) == np.array(["cat", "dog", "bird"])[y]).mean()))
    cv = cross_validate(data=str(path), folds=2, run_dir=tmp_path / "cv", **opts)
    assert len(cv.folds) == 2
    with pytest.raises(TrainwiseError, match="has 2 values per row, which are not class probabilities for the model's 3 classes"):
        model.evaluate(X, P[:, :2] / P[:, :2].sum(1, keepdims=True))


def test_sanity_trains_on_the_probabilities_and_judges_the_loss_against_their_entropy():
    from trainwise.tune.sanity import sanity

    X, y = _blobs(200, 3)
    P = np.tile(np.array([[0.7, 0.2, 0.1]], dtype=np.float32), (200, 1))  # every row the same: no model reaches 0
    entropy = float(-(P[0] * np.log(P[0])).sum())  # 0.8018...
    r = sanity(X, P, task="classification", batch_size=16, lr=0.01)
    assert r.lowest_loss == pytest.approx(entropy, abs=1e-6)
    assert r.can_learn and entropy <= r.final_loss <= entropy + 0.05 and r.initial_loss > entropy + 0.1
    assert f"above the lowest loss these targets allow, {entropy:.3g}" in r.verdict
    no = sanity(X, P, task="classification", batch_size=16, lr=0.01, steps=1, tol=1e-6)
    assert not no.can_learn and "more than 1e-06 above that lowest loss" in no.verdict
    # labels instead: the floor is 0 and the loss gets there
    hard = sanity(X, y, task="classification", batch_size=16, lr=0.01)
    assert hard.lowest_loss == 0.0 and hard.can_learn and hard.final_loss <= 0.05


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
def test_the_lowest_soft_loss_is_the_minimum_of_the_weighted_loss(kind):
    from trainwise.tune.sanity import lowest_soft_loss

    g = torch.Generator().manual_seed(0)
    if kind == "binary":
        p = torch.rand(12, 1, generator=g)
        base, y = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0])), (p > 0.5).float()
    else:
        p = torch.softmax(torch.randn(12, 4, generator=g) * 2, dim=1)
        base, y = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5, 4.0])), p.argmax(1)
    loss, w = SampleWeighted(base), torch.rand(12, generator=g) + 0.5
    floor = lowest_soft_loss(loss, kind, y, w, p)
    out = torch.zeros_like(p, requires_grad=True)  # the loss minimized directly over free outputs
    opt = torch.optim.LBFGS([out], max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        value = loss(out, (y, w, p))
        value.backward()
        return value

    opt.step(closure)
    reached = float(loss(out, (y, w, p)).detach())
    assert reached == pytest.approx(floor, abs=5e-5) and reached >= floor - 1e-6  # no outputs do better
    if kind == "multiclass":  # unweighted: the mean entropy of the rows
        plain = lowest_soft_loss(SampleWeighted(nn.CrossEntropyLoss()), kind, y, None, p)
        assert plain == pytest.approx(float(-(p * p.log()).sum(1).mean()), abs=1e-6)


def test_sanity_finds_the_lowest_loss_inside_the_tabular_models_loss_and_says_when_it_cannot_tell():
    from trainwise.tune.sanity import sanity

    X, _ = _blobs(200, 3)
    P = np.tile(np.array([[0.7, 0.2, 0.1]], dtype=np.float32), (200, 1))
    q = P[0] * np.array([1.0, 2.0, 8.0]) / (P[0] * np.array([1.0, 2.0, 8.0])).sum()  # the weighted loss's best outputs
    lowest = float(-(q * np.log(q)).sum())  # 1.06..., above the targets' own entropy 0.80
    for model in ("mlp:32", "tabular"):  # the tabular model wraps its loss per member: the floor is the same
        r = sanity(X, P, task="classification", model=model, class_weight="1,2,8", batch_size=16, lr=0.01, tol=0.01)
        assert r.lowest_loss == pytest.approx(lowest, abs=1e-5), model
        assert r.final_loss >= lowest - 1e-5, model  # no model goes below it
    near = np.tile(np.array([[0.34, 0.33, 0.33]], dtype=np.float32), (200, 1))  # what an untrained model predicts
    r = sanity(X, near, task="classification", batch_size=16, lr=0.01, tol=0.05)
    assert not r.can_learn and r.verdict.startswith("cannot tell: the untrained model's loss") and "--tol" in r.verdict
