"""The backprop walk-through reproduces the lecture's numbers; gradcheck passes correct and fails wrong gradients."""
import json

import pytest
import torch
from torch import nn

from trainwise import TrainwiseError
from trainwise.diagnose import explain_backprop, gradcheck
from trainwise.models import MLP


def test_lecture_numbers_to_four_decimals():
    r = explain_backprop()
    g = {k: round(v["value"], 4) for k, v in r["gradients"].items()}
    assert round(r["forward"]["y_hat"], 4) == 1.3429
    assert (g["b3"], g["w3"], g["w4"], g["b1"], g["b2"]) == (-3.3142, -2.9191, -2.4229, -0.3480, -1.3032)
    assert (round(r["forward"]["a1"], 2), round(r["forward"]["a2"], 2)) == (0.88, 0.73)  # the slide's a1, a2
    assert r["max_abs_difference"] < 1e-12  # hand-derived == autograd


def test_chain_rule_factors_multiply_to_the_gradient():
    r = explain_backprop()
    b1 = r["gradients"]["b1"]
    assert list(b1["factors"]) == ["dL/dŷ", "dŷ/da1 = w3", "da1/dz1 = a1(1−a1)", "dz1/db1"]
    a1 = r["forward"]["a1"]
    assert b1["factors"]["da1/dz1 = a1(1−a1)"] == pytest.approx(a1 * (1 - a1))
    assert b1["value"] == pytest.approx(-3.3142 * 1 * a1 * (1 - a1), abs=1e-4)


def test_other_weights_and_inputs_still_match_autograd():
    r = explain_backprop(x=-0.5, y=0.2, w1=0.3, w4=-1.7, b3=0.4)
    assert r["params"]["w1"] == 0.3 and r["params"]["w2"] == -1.0  # unspecified ones keep the lecture's values
    for g in r["gradients"].values():
        assert g["value"] == pytest.approx(g["autograd"], abs=1e-12)
    assert r["gradients"]["w1"]["value"] == pytest.approx(r["gradients"]["b1"]["value"] * -0.5)
    with pytest.raises(TrainwiseError, match="unknown parameter 'w5'"):
        explain_backprop(w5=1.0)


def test_cli_backprop_json_and_text(cli):
    code, out, _ = cli("backprop", "--json")
    r = json.loads(out)
    assert code == 0 and round(r["gradients"]["w3"]["value"], 4) == -2.9191 and round(r["forward"]["y_hat"], 4) == 1.3429
    code, out, _ = cli("backprop")
    assert "ŷ = w3·a1 + w4·a2 + b3 = 1.3429" in out and "dL/db2 = " in out and "= -1.3032" in out
    assert "gradients match" in out
    code, out, _ = cli("backprop", "--json", "--w3", "0.5")
    assert json.loads(out)["params"]["w3"] == 0.5


def test_one_sgd_step_with_the_hand_gradients_equals_torch_sgd():
    r = explain_backprop(lr=0.1)
    st = r["step"]
    for name, value in r["params"].items():  # w - lr * dL/dw, by hand
        assert st["params_after"][name] == pytest.approx(value - 0.1 * r["gradients"][name]["value"], abs=1e-15)
        assert st["params_after"][name] == pytest.approx(st["torch_params_after"][name], abs=1e-12)
    assert round(st["loss_before"], 4) == 2.7459 and st["loss_after"] < st["loss_before"]
    assert st["loss_after"] == pytest.approx(st["torch_loss_after"], abs=1e-12) and st["max_abs_difference"] < 1e-12
    assert round(explain_backprop()["step"]["loss_after"], 4) == 2.4632  # the lecture's lr 0.01
    with pytest.raises(TrainwiseError, match="lr=-1 is not a positive learning rate"):
        explain_backprop(lr=-1)


def test_cli_backprop_shows_the_step(cli):
    code, out, _ = cli("backprop", "--lr", "0.1")
    assert code == 0 and "one SGD step, w ← w − lr·dL/dw with lr=0.1" in out
    assert "b3 = -1.0000 − 0.1×(-3.3142) = -0.6686" in out and "the hand step and torch.optim.SGD match" in out
    assert json.loads(cli("backprop", "--json")[1])["step"]["lr"] == 0.01


class _WrongGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.tanh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (1 - torch.tanh(x) ** 2) * 1.1  # 10% off


class _BadTanh(nn.Module):
    def forward(self, x):
        return _WrongGrad.apply(x)


def test_gradcheck_passes_autograd_and_catches_a_wrong_backward():
    torch.manual_seed(0)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    good = gradcheck(MLP(3, [6, 6], 2, activation="tanh"), nn.CrossEntropyLoss(), x, y)
    assert good.passed and good.max_rel_error < 1e-6 and set(good.per_param) == {"1.weight", "1.bias", "3.weight",
                                                                                  "3.bias", "5.weight", "5.bias"}
    assert good.per_param["5.bias"][1] == 2  # small tensors are checked whole
    bad = gradcheck(nn.Sequential(nn.Linear(3, 6), _BadTanh(), nn.Linear(6, 2)), nn.CrossEntropyLoss(), x, y)
    assert not bad.passed and bad.per_param["0.weight"][0] == pytest.approx(0.1 / 1.1, rel=0.05)
    assert bad.per_param["2.weight"][0] < 1e-6  # layers after the bad one are still right
    assert "FAIL" in str(bad)


def test_gradcheck_leaves_the_model_untouched():
    model = MLP(3, [4], 2, dropout=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gradcheck(model, nn.CrossEntropyLoss(), torch.randn(2, 3), torch.tensor([0, 1]))
    assert all(torch.equal(before[k], v) and v.dtype == torch.float32 for k, v in model.state_dict().items())
    assert model.training


def test_cli_gradcheck_and_summary(cli):
    code, out, _ = cli("gradcheck", "--data", "iris", "--model", "mlp:8", "--activation", "tanh")
    assert code == 0 and "PASS: largest relative error" in out and "1.weight" in out
    code, out, _ = cli("summary", "--data", "digits", "--model", "mlp:32", "--batch-norm", "--dropout", "0.1", "--json")
    s = json.loads(out)
    assert [layer["type"] for layer in s["layers"]] == ["Flatten", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert s["layers"][1]["output_shape"] == [32, 32] and s["layers"][1]["parameters"] == 64 * 32 + 32
    assert s["total_params"] == 64 * 32 + 32 + 64 + 32 * 10 + 10 and s["param_bytes"] == 4 * s["total_params"]
    code, out, _ = cli("summary", "--data", "digits", "--model", "mlp:32")
    assert "parameters: 2,410 (2,410 trainable, 0 frozen)" in out


def test_summary_marks_frozen_layers():
    from trainwise.models.summary import summarize

    model = MLP(4, [8], 3)
    model[1].requires_grad_(False)
    s = summarize(model, (4,))
    assert s.trainable_params == 8 * 3 + 3 and s.total_params == 4 * 8 + 8 + 27
    assert s.rows[1][4] is False and s.rows[-1][4] is True and "frozen" in str(s)


def test_summary_table_is_torchinfos_with_full_layer_names():
    import torchinfo

    from trainwise.models import build_model, resolve_model
    from trainwise.models.summary import summarize

    model = build_model(resolve_model("resmlp:16,2", (6,), 3))
    s = summarize(model, (6,), batch_size=4)
    theirs = str(torchinfo.summary(model, input_size=(4, 6), verbose=0, mode="eval",
                                   col_names=("output_size", "num_params", "trainable"), row_settings=("var_names",), depth=32))
    assert str(s).startswith(theirs.rstrip())  # torchinfo's own table, then trainwise's memory estimate
    names = [r[0] for r in s.rows]
    assert any("." in n for n in names)  # a layer inside a residual block keeps its dotted path (e.g. 1.0.norm)
    assert dict(zip(names, (r[3] for r in s.rows))) == {n: sum(p.numel() for p in m.parameters(recurse=False))
                                                        for n, m in model.named_modules() if n in names}
    assert s.total_params == sum(p.numel() for p in model.parameters())
