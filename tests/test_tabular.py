"""``--model tabular`` (issue 18): each ingredient checked with values, the spec's keys and errors, and a run that
round-trips through its directory (predict, evaluate, load, ONNX export)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import trainwise
from trainwise.errors import TrainwiseError
from trainwise.models import build_model, resolve_model
from trainwise.models.tabular import TABULAR_DEFAULTS, MemberLoss, TabularNet, combine_members
from trainwise.train.metrics import MemberMetrics, MetricAccumulator

from .conftest import small_table


def _recipe(spec="tabular", shape=(6,), n_numeric=4, out=3, kind="multiclass", dropout=0.0):
    return resolve_model(spec, shape, out, n_numeric=n_numeric, output_kind=kind, dropout=dropout)


def test_the_spec_sets_each_ingredient_and_refuses_bad_keys_and_values():
    r = _recipe("tabular:k=4,embedding=none,scale=off,smoothing=0,width=32,depth=3")
    assert {k: r[k] for k in ("k", "embedding", "scale", "smoothing", "width", "depth")} == \
        {"k": 4, "embedding": "none", "scale": False, "smoothing": 0.0, "width": 32, "depth": 3}
    assert {k: _recipe()[k] for k in TABULAR_DEFAULTS} == TABULAR_DEFAULTS
    assert (_recipe()["in_features"], _recipe()["n_numeric"]) == (6, 4)
    with pytest.raises(TrainwiseError, match=r"model spec 'tabular:ensemble=4': 'ensemble=4' is not key=value with a known key") as e:
        _recipe("tabular:ensemble=4")
    assert "k, width, depth, embedding" in e.value.hint
    for spec, message in [("k=0", "k=0 is too small"), ("embedding=pwl", "embedding=pwl is not one of periodic, none"),
                          ("smoothing=1.5", "smoothing=1.5 is out of range"), ("scale=maybe", "scale=maybe is not on/off"),
                          ("frequency_scale=0", "frequency_scale=0.0 is out of range"), ("k=2,k=3", "'tabular:k=2,k=3' sets k twice")]:
        with pytest.raises(TrainwiseError) as e:
            _recipe(f"tabular:{spec}")
        assert message in e.value.message and e.value.hint, spec
    with pytest.raises(TrainwiseError, match=r"model 'tabular' is for tables, but these inputs have shape \(1, 8, 8\)") as e:
        _recipe(shape=(1, 8, 8))
    assert "cnn:32,64" in e.value.hint


def test_members_train_apart_and_evaluate_combined():
    torch.manual_seed(0)
    net = TabularNet(6, 4, 3, kind="multiclass", k=5, dropout=0.0)
    x = torch.randn(7, 6)
    members = net.train()(x)
    assert members.shape == (7, 5, 3)
    assert not torch.allclose(members[:, 0], members[:, 1])  # the members differ (their own scalings)
    combined = net.eval()(x)
    mean_probs = members.softmax(-1).mean(1)
    torch.testing.assert_close(combined.exp(), mean_probs)  # log of the members' mean probabilities
    torch.testing.assert_close(combine_members(members[..., :1], "binary").sigmoid(), members[..., :1].sigmoid().mean(1))
    torch.testing.assert_close(combine_members(members, "regression"), members.mean(1))


def test_the_ingredients_are_where_the_recipe_says():
    torch.manual_seed(0)
    plain = TabularNet(6, 4, 2, kind="multiclass", k=1, embedding="none", scale=False)
    assert plain.embed is None and plain.scale is None and plain.head.weight.shape[0] == 1  # one member
    full = TabularNet(6, 4, 2, kind="multiclass", k=3, d_embedding=5)
    assert full.embed.get_output_shape() == (4, 5)  # the 4 numeric columns embedded, the 2 one-hot ones not
    assert full.scale.shape == (4,) and torch.equal(full.scale.detach(), torch.ones(4))
    # the per-column scale acts on its numeric column: at 0 that column no longer matters
    x = torch.randn(5, 6)
    x2 = x.clone()
    x2[:, 1] += 3.0
    full.eval()
    assert not torch.allclose(full(x), full(x2))
    with torch.no_grad():
        full.scale[1] = 0.0
    torch.testing.assert_close(full(x), full(x2))
    # a one-hot column reaches the backbone as it is (no embedding): changing it changes the output
    x3 = x.clone()
    x3[:, 5] = 1 - x3[:, 5]
    assert not torch.allclose(full(x), full(x3))


def test_member_loss_is_each_members_loss_averaged_with_label_smoothing_in_training_only():
    torch.manual_seed(0)
    out, y = torch.randn(8, 4, 3), torch.randint(0, 3, (8,))
    loss = MemberLoss(nn.CrossEntropyLoss(), smoothing=0.1)
    expected = sum(F.cross_entropy(out[:, j], y, label_smoothing=0.1) for j in range(4)) / 4
    torch.testing.assert_close(loss(out, y), expected)
    combined = combine_members(out, "multiclass")
    torch.testing.assert_close(loss(combined, y), F.cross_entropy(combined, y))  # evaluation: the true cross-entropy
    weight = torch.tensor([1.0, 2.0, 5.0])
    weighted = MemberLoss(nn.CrossEntropyLoss(weight=weight), smoothing=0.0)
    torch.testing.assert_close(weighted(out, y), F.cross_entropy(out.flatten(0, 1), y.repeat_interleave(4), weight=weight))
    yb, outb = torch.randint(0, 2, (8, 1)).float(), torch.randn(8, 4, 1)
    bce = MemberLoss(nn.BCEWithLogitsLoss(), smoothing=0.2)
    expected = sum(F.binary_cross_entropy_with_logits(outb[:, j], yb * 0.8 + 0.1) for j in range(4)) / 4
    torch.testing.assert_close(bce(outb, yb), expected)
    yr, outr = torch.randn(8, 2), torch.randn(8, 4, 2)
    torch.testing.assert_close(MemberLoss(nn.MSELoss(), smoothing=0.1)(outr, yr), F.mse_loss(outr, yr[:, None].expand(8, 4, 2)))


def test_member_metrics_score_the_combined_prediction():
    torch.manual_seed(0)
    out, y = torch.randn(16, 4, 3), torch.randint(0, 3, (16,))
    a, b = MemberMetrics("multiclass", torch.device("cpu")), MetricAccumulator("multiclass", torch.device("cpu"))
    a.update(out, y, torch.tensor(1.0))
    b.update(combine_members(out, "multiclass"), y, torch.tensor(1.0))
    assert a.compute("train") == b.compute("train")


def test_a_tabular_run_round_trips_through_its_directory(cli, tmp_path):
    table = small_table(300, seed=3)
    table["amount"] = np.exp(np.random.default_rng(0).normal(0, 2, len(table)))  # heavy-tailed: robust-scaled
    csv = tmp_path / "t.csv"
    table.to_csv(csv, index=False)
    run = tmp_path / "run"
    code, out, err = cli("fit", "--data", str(csv), "--target", "label", "--model", "tabular:k=4,width=32", "--epochs", "8",
                         "--run-dir", str(run), "--quiet")
    assert code == 0, err
    recipe = json.loads((run / "model.json").read_text())
    assert recipe["builder"] == "tabular" and recipe["kind"] == "multiclass" and recipe["k"] == 4  # two classes, cross-entropy
    assert (recipe["in_features"], recipe["n_numeric"]) == (6, 3)  # a, b, amount; then color=blue/green/red
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["test/accuracy"] > 0.75
    saved = trainwise.load(run)
    rows = pd.read_csv(csv).drop(columns=["label"])
    proba = saved.predict_proba(rows)
    assert proba.shape == (300, 2) and np.allclose(proba.sum(1), 1, atol=1e-6)
    code, out, err = cli("predict", str(run), str(csv), "--output", str(tmp_path / "p.csv"))
    assert code == 0, err
    written = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(written[["prob_no", "prob_yes"]].to_numpy(), proba, rtol=1e-5, atol=1e-6)
    assert list(written["prediction"]) == list(saved.predict(rows))
    labels = pd.read_csv(csv)["label"]
    assert saved.evaluate(pd.read_csv(csv))["eval/accuracy"] == pytest.approx(np.mean(saved.predict(rows) == labels))
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from trainwise.export import check_onnx, export  # noqa: PLC0415 - optional (the export extra)

    path = export(run)
    assert json.loads(path.with_name(path.name + ".json").read_text())["classes"] == ["no", "yes"]
    np.testing.assert_allclose(check_onnx(path, saved.preprocess.transform(rows)), proba, atol=1e-5)


def test_a_tabular_model_builds_from_its_recipe_alone():
    recipe = _recipe("tabular:k=2,width=16", out=1, kind="regression")
    torch.manual_seed(0)
    a = build_model(recipe)
    torch.manual_seed(0)
    b = build_model(json.loads(json.dumps(recipe)))  # through JSON, as model.json
    x = torch.randn(3, 6)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))
    assert a.eval()(x).shape == (3, 1)
    from trainwise.models import check_recipe  # noqa: PLC0415

    assert check_recipe(json.loads(json.dumps(recipe)), path="model.json") == recipe
    with pytest.raises(TrainwiseError, match=r"'model.json' .*'n_numeric' \(7\) exceeds 'in_features' \(6\)"):
        check_recipe(recipe | {"n_numeric": 7}, path="model.json")


def test_model_auto_is_tabular_for_a_table_and_an_mlp_for_arrays(small_csv, blobs, tmp_path):
    import yaml  # noqa: PLC0415 - test-only

    trainwise.fit(str(small_csv), target="label", epochs=2, quiet=True, run_dir=str(tmp_path / "table"))
    assert yaml.safe_load((tmp_path / "table" / "config.yaml").read_text())["model"] == "tabular"
    assert json.loads((tmp_path / "table" / "model.json").read_text())["builder"] == "tabular"
    X, y = blobs
    trainwise.fit(X, y, epochs=2, quiet=True, run_dir=str(tmp_path / "arrays"))
    assert yaml.safe_load((tmp_path / "arrays" / "config.yaml").read_text())["model"] == "mlp:128,64"
    explicit = trainwise.fit(str(small_csv), target="label", model="mlp:16", epochs=1, quiet=True)
    assert isinstance(explicit.model, trainwise.MLP) and explicit.summary["model"]["spec"] == "mlp:16"


def test_restarts_of_a_tabular_model_train_one_by_one_and_say_why(cli, small_csv, tmp_path):
    run = tmp_path / "run"
    code, out, err = cli("fit", "--data", str(small_csv), "--target", "label", "--model", "tabular:k=2,width=16", "--restarts", "2",
                         "--epochs", "2", "--run-dir", str(run))
    assert code == 0, err
    assert "training the 2 members one by one: a tabular model is already 2 members trained at once (TabM)" in out
    assert sorted(p.name for p in (run / "restarts").iterdir()) == ["seed-0", "seed-1"]


def test_gradcheck_and_sanity_pass_on_a_correct_tabular_model(cli, small_csv):
    from trainwise.diagnose.gradcheck import gradcheck  # noqa: PLC0415

    torch.manual_seed(0)
    net = TabularNet(6, 4, 3, kind="multiclass", k=3, width=16)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    result = gradcheck(net, nn.CrossEntropyLoss(), x, y)  # the members' scalings have gradients of ~1e-8: judged absolutely
    assert result.passed, str(result)
    broken = gradcheck(net, nn.CrossEntropyLoss(), x, y, eps=1e-2)  # a coarse step is still caught as wrong
    assert not broken.passed
    code, out, err = cli("sanity", "--data", str(small_csv), "--target", "label")
    assert code == 0 and "the model can learn" in out, out + err  # smoothing off by default: the loss can reach 0
