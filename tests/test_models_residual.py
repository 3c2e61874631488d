"""Residual models (`resmlp:`, `resnet:`) and the ELU/SELU activations: shapes, parameter counts by hand, the
skip path, vanishing gradients against a plain MLP, recipes through JSON, spec errors, and training end to end."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from rich.console import Console
from sklearn.datasets import load_digits
from torch import nn

import trainwise
from trainwise.diagnose.rules import Evidence, vanishing_gradients
from trainwise.errors import TrainwiseError
from trainwise.models import build_model, check_recipe, init_weights, is_builtin_spec, resolve_model
from trainwise.models.builders import MLP
from trainwise.models.residual import PreActBlock, ResidualMLPBlock, ResMLP, ResNet
from trainwise.train.stacked import layers_reason
from trainwise.tune.auto import capacity_choices


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- shapes and parameter counts ---

@pytest.mark.parametrize("spec,shape", [("resnet:16,32,64", (1, 28, 28)), ("resnet:8,16:2", (3, 32, 32)),
                                        ("resnet:4,8,16", (1, 8, 8)), ("resnet:4,8,16,32,64", (3, 2, 2)),
                                        ("resmlp:32,3", (20,)), ("resmlp:16,2", (1, 8, 8))])
def test_output_shapes(spec, shape):
    model = build_model(resolve_model(spec, shape, 7)).eval()
    assert model(torch.randn(5, *shape)).shape == (5, 7)


def test_resnet_halves_the_map_per_stage_until_one_pixel():
    maps = []
    model = build_model(resolve_model("resnet:4,8,16", (1, 28, 28), 10))
    for stage in list(model)[1:4]:
        stage.register_forward_hook(lambda m, i, out: maps.append(tuple(out.shape[1:])))
    model(torch.zeros(2, 1, 28, 28))
    assert maps == [(4, 28, 28), (8, 14, 14), (16, 7, 7)]
    maps.clear()
    model = build_model(resolve_model("resnet:4,8,16", (1, 2, 2), 10))
    for stage in list(model)[1:4]:
        stage.register_forward_hook(lambda m, i, out: maps.append(tuple(out.shape[1:])))
    model(torch.zeros(2, 1, 2, 2))
    assert maps == [(4, 2, 2), (8, 1, 1), (16, 1, 1)]  # a 1-pixel map is not halved again


def test_resmlp_parameter_count_by_hand():
    d, w, b, k = 3, 4, 2, 2
    linear = lambda i, o: i * o + o  # noqa: E731
    by_hand = linear(d, w) + b * 2 * linear(w, w) + linear(w, k)
    assert by_hand == 106
    assert _n_params(build_model(resolve_model("resmlp:4,2", (d,), k))) == 106
    # batch norm: a weight and a bias per unit, in each block and before the head (running stats are buffers)
    assert _n_params(build_model(resolve_model("resmlp:4,2", (d,), k, batch_norm=True))) == 106 + (b + 1) * 2 * w


def test_resnet_parameter_count_by_hand():
    conv = lambda i, o, k=3: i * o * k * k  # noqa: E731 - bias-free: a batch norm follows every conv
    bn = lambda c: 2 * c  # noqa: E731
    stem = conv(1, 2)                                                          # 18
    stage1 = bn(2) + conv(2, 2) + bn(2) + conv(2, 2)                           # 80: identity shortcut
    stage2 = bn(2) + conv(2, 4) + bn(4) + conv(4, 4) + conv(2, 4, 1)           # 236: stride 2, 1x1 projection
    head = bn(4) + 4 * 3 + 3                                                   # 23
    assert stem + stage1 + stage2 + head == 357
    assert _n_params(build_model(resolve_model("resnet:2,4", (1, 4, 4), 3))) == 357
    second_block = bn(4) + conv(4, 4) + bn(4) + conv(4, 4)                    # 304 (and 80 more in stage 1)
    assert _n_params(build_model(resolve_model("resnet:2,4:2", (1, 4, 4), 3))) == 357 + 80 + second_block == 741


# --- the skip path ---

def test_zeroed_residual_blocks_are_exactly_the_identity():
    torch.manual_seed(0)
    block = ResidualMLPBlock(6, act=nn.Tanh, dropout=0.5, batch_norm=True)  # train mode: dropout and batch stats
    nn.init.zeros_(block.fc2.weight), nn.init.zeros_(block.fc2.bias)
    x = torch.randn(8, 6)
    assert torch.equal(block(x), x)
    conv_block = PreActBlock(3, 3, act=nn.ReLU)
    nn.init.zeros_(conv_block.conv2.weight)
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(conv_block(x), x)
    # a whole ResMLP of zeroed blocks is the input layer, the activation and the head
    model = ResMLP(5, 6, 3, 2, act=nn.ReLU)
    for blk in list(model)[2:5]:
        nn.init.zeros_(blk.fc2.weight), nn.init.zeros_(blk.fc2.bias)
    x = torch.randn(4, 5)
    assert torch.equal(model(x), model[-1](torch.relu(model[1](x))))


def test_a_downsampling_block_uses_a_projection_shortcut():
    block = PreActBlock(2, 4, stride=2, act=nn.ReLU)
    assert block.shortcut.kernel_size == (1, 1) and block.shortcut.stride == (2, 2)
    assert PreActBlock(4, 4, act=nn.ReLU).shortcut is None


# --- the lecture's vanishing gradients ---

def _first_and_last_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    nn.functional.cross_entropy(model(x), y).backward()
    weights = [p for p in model.parameters() if p.ndim > 1]
    return weights[0].grad.norm().item(), weights[-1].grad.norm().item()


@pytest.mark.parametrize("activation,at_least", [("sigmoid", 1e6), ("tanh", 1e2)])
def test_residual_mlp_keeps_the_first_layers_gradient_where_a_plain_one_loses_it(activation, at_least):
    # equally deep: 12 linear layers each (resmlp:32,5 = input layer + 5 blocks of 2 + head; mlp: 11 hidden + head)
    torch.manual_seed(0)
    x, y = torch.randn(64, 20), torch.randint(0, 3, (64,))
    plain = build_model(resolve_model("mlp:" + ",".join(["32"] * 11), (20,), 3, activation=activation, dropout=0.0))
    residual = build_model(resolve_model("resmlp:32,5", (20,), 3, activation=activation, dropout=0.0))
    assert len([p for p in plain.parameters() if p.ndim > 1]) == len([p for p in residual.parameters() if p.ndim > 1]) == 12
    (plain_first, plain_last), (res_first, res_last) = (_first_and_last_grad(m, x, y) for m in (plain, residual))
    # measured (seed 0): sigmoid 0.0587 vs 1.6e-10 (ratio ~4e8); tanh 0.216 vs 5.1e-4 (ratio ~420)
    assert res_first / plain_first > at_least
    assert res_first / res_last > 0.1  # the residual net's first layer learns about as fast as its last
    if activation == "sigmoid":  # and the doctor sees it: the plain net trips its rule, the residual one does not
        stats = lambda f, last: {"weight_names": ["first", "last"], "grad_norms": [[f, last]]}  # noqa: E731
        assert vanishing_gradients(Evidence.from_run([{"train/loss": 1.0}], stats(plain_first, plain_last))) is not None
        assert vanishing_gradients(Evidence.from_run([{"train/loss": 1.0}], stats(res_first, res_last))) is None


def test_the_doctors_vanishing_gradient_advice_names_the_residual_models():
    f = vanishing_gradients(Evidence.from_run([{"train/loss": 2.3}], {"weight_names": ["a", "b"], "grad_norms": [[1e-6, 1e-1]]}))
    assert f["advice"].startswith("use ReLU-family activations (--activation relu)")
    assert "skip connections: a residual model (--model resmlp:128,4 for an MLP, resnet:16,32,64 for images)" in f["advice"]


# --- ELU and SELU ---

def test_elu_and_selu_are_the_layers_they_name():
    assert isinstance(build_model(resolve_model("mlp:4", (3,), 2, activation="elu"))[2], nn.ELU)
    assert isinstance(build_model(resolve_model("resmlp:4,1", (3,), 2, activation="selu"))[2].act1, nn.SELU)


def test_selu_gets_lecun_normal_weights_and_stays_self_normalizing():
    torch.manual_seed(0)
    x = torch.randn(512, 64)
    deep = "mlp:" + ",".join(["128"] * 16)
    selu = build_model(resolve_model(deep, (64,), 3, activation="selu", dropout=0.0))
    assert selu[1].weight.std().item() == pytest.approx(64 ** -0.5, rel=0.05) and selu[1].bias.abs().sum() == 0
    hidden = nn.Sequential(*list(selu)[:-1])(x)  # after 16 SELU layers: still mean ~0, variance ~1
    assert abs(hidden.mean().item()) < 0.1 and 0.7 < hidden.var().item() < 1.4
    plain = MLP(64, [128] * 16, 3, activation="selu")  # PyTorch's default init: variance 1/(3 fan_in) per layer
    assert nn.Sequential(*list(plain)[:-1])(x).var().item() < 0.1
    # an explicit --init still wins (the pipeline applies it after building)
    assert init_weights(selu, "normal")[1].weight.std().item() == pytest.approx(0.01, rel=0.05)


# --- recipes ---

@pytest.mark.parametrize("spec,shape,options", [("resmlp:8,2", (5,), dict(activation="elu", dropout=0.2, batch_norm=True)),
                                                ("resnet:4,8:2", (3, 8, 8), dict(activation="selu", dropout=0.1))])
def test_the_recipe_round_trips_through_json(spec, shape, options):
    recipe = resolve_model(spec, shape, 3, **options)
    torch.manual_seed(0)
    model = build_model(recipe)
    model(torch.randn(16, *shape))  # train mode: the batch norms' running statistics move off their start
    read_back = check_recipe(json.loads(json.dumps(recipe)), path="model.json")
    assert read_back == recipe
    rebuilt = build_model(read_back)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(4, *shape)
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))


def test_damaged_residual_recipes_are_refused_naming_the_field():
    good = resolve_model("resmlp:8,2", (5,), 3)
    with pytest.raises(TrainwiseError, match=r"'model.json' is not a valid trainwise file: 'blocks' is 0, expected a positive integer"):
        check_recipe(good | {"blocks": 0}, path="model.json")
    resnet = resolve_model("resnet:4,8", (1, 8, 8), 3)
    assert "batch_norm" not in resnet  # batch norm is part of the design
    with pytest.raises(TrainwiseError, match=r"unknown 'batch_norm'"):
        check_recipe(resnet | {"batch_norm": True}, path="model.json")
    with pytest.raises(TrainwiseError, match=r"'channels' is \[\], expected a non-empty list of positive integers"):
        check_recipe(resnet | {"channels": []}, path="model.json")


# --- spec errors ---

@pytest.mark.parametrize("spec,shape,message,hint", [
    ("resnet:", (1, 8, 8), "model spec 'resnet:' has no stage channels", "resnet:16,32,64 (three stages)"),
    ("resnet", (1, 8, 8), "model spec 'resnet' has no stage channels", "resnet:16,32,64:2 (two blocks per stage)"),
    ("resnet:16", (4,), "model 'resnet:16' needs images (channels, height, width), but these inputs have shape (4,)",
     "or an MLP (mlp:128,64 or resmlp:128,4)"),
    ("resnet:16,0", (1, 8, 8), "model spec 'resnet:16,0' has a size <= 0 ('16,0')", "use positive sizes, e.g. resnet:16,32,64"),
    ("resnet:16,32:0", (1, 8, 8), "model spec 'resnet:16,32:0' has a size <= 0 ('0')", "use positive sizes"),
    ("resnet:16,32:2,3", (1, 8, 8), "model spec 'resnet:16,32:2,3': blocks per stage is one number, not '2,3'", "resnet:16,32,64:2"),
    ("resnet:16,x", (1, 8, 8), "model spec 'resnet:16,x' has a non-integer size ('16,x')", "write sizes as integers"),
    ("resmlp:abc", (4,), "model spec 'resmlp:abc' has a non-integer size ('abc')", "e.g. resmlp:128,4 (width 128, 4 residual blocks)"),
    ("resmlp:0,4", (4,), "model spec 'resmlp:0,4' has a size <= 0 ('0,4')", "use positive sizes, e.g. resmlp:128,4"),
    ("resmlp:128,0", (4,), "model spec 'resmlp:128,0' has a size <= 0", "resmlp:128,4"),
    ("resmlp:128", (4,), "model spec 'resmlp:128' needs two sizes, WIDTH,BLOCKS, but has '128'", "e.g. resmlp:128,4"),
    ("resmlp:", (4,), "model spec 'resmlp:' needs two sizes, WIDTH,BLOCKS, but has none", "e.g. resmlp:128,4"),
    ("resmlp:64,2,2", (4,), "model spec 'resmlp:64,2,2' needs two sizes, WIDTH,BLOCKS, but has '64,2,2'", "e.g. resmlp:128,4"),
    ("resnt:16", (1, 8, 8), "unknown model spec 'resnt:16'", "resnet:C1,C2,...[:BLOCKS] (e.g. resnet:16,32,64)"),
])
def test_bad_specs_name_the_spec_and_the_fix(spec, shape, message, hint):
    with pytest.raises(TrainwiseError) as e:
        resolve_model(spec, shape, 3)
    assert e.value.message.startswith(message) and hint in e.value.hint, str(e.value)


def test_bad_activation_and_cli_exit_code(cli, tmp_path, monkeypatch):
    with pytest.raises(TrainwiseError, match="did you mean 'selu'"):
        resolve_model("resmlp:8,2", (4,), 3, activation="sellu")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("fit", "--data", "iris", "--model", "resnet:8,16")
    assert code == 2 and "model 'resnet:8,16' needs images" in err and "HINT:" in err
    assert not (tmp_path / "runs").exists()


def test_the_new_kinds_are_built_in_and_the_search_can_widen_them():
    assert is_builtin_spec("resmlp:128,4") and is_builtin_spec("resnet:16,32,64") and not is_builtin_spec("resnet.py:build")
    assert capacity_choices("resmlp:128,4") == ["resmlp:128,4", "resmlp:256,4", "resmlp:128,8"]
    assert capacity_choices("resnet:16,32,64") == ["resnet:16,32,64", "resnet:32,64,128"]
    assert capacity_choices("resmlp:abc") == ["resmlp:abc"]


def test_stacked_restarts_do_not_take_residual_models():
    assert layers_reason(ResMLP(4, 8, 2, 3, act=nn.ReLU)) == \
        "its layer ResidualMLPBlock does not stack (only linear layers, batch norm, dropout, activations)"
    assert layers_reason(ResNet((1, 8, 8), [4], 1, 3, act=nn.ReLU)) is not None


# --- end to end ---

def test_resmlp_restarts_fall_back_to_one_by_one_and_train():
    from trainwise.api import fit

    out = io.StringIO()
    r = fit(data="iris", model="resmlp:16,2", epochs=20, restarts=2, batch_size=32, lr=0.01, checkpoint=False,
            console=Console(file=out, width=300))
    assert "training the 2 members one by one: only the built-in mlp and linear models are vectorized " \
           "(this run's model is resmlp:16,2)" in out.getvalue()
    assert [run["seed"] for run in r.summary["restarts"]["runs"]] == [0, 1]
    assert r.summary["model"]["recipe"]["builder"] == "resmlp"
    assert r.test["test/accuracy"] >= 0.9


@pytest.mark.parametrize("activation", ["relu", "selu"])
def test_resmlp_fits_digits(activation):
    r = trainwise.fit("digits", model="resmlp:32,2", activation=activation, epochs=8, batch_size=64, lr=3e-3,
                      quiet=True, checkpoint=False)
    assert r.test["test/accuracy"] >= 0.9


def test_resnet_fits_digit_images_and_reloads_from_its_run(tmp_path):
    d = load_digits()
    X = (d.data.reshape(-1, 1, 8, 8) / 16).astype(np.float32)[:600]  # 8x8 images: the tiny end
    r = trainwise.fit(X, d.target[:600], model="resnet:8,16", epochs=10, batch_size=64, lr=0.01, run_dir=tmp_path / "run",
                      quiet=True, checkpoint=False)
    assert r.summary["data"]["input_shape"] == [1, 8, 8] and r.summary["model"]["recipe"]["builder"] == "resnet"
    assert r.test["test/accuracy"] >= 0.85  # measured 0.956 (seed 0)
    loaded = trainwise.load_run(tmp_path / "run").model.eval()  # rebuilt from model.json + safetensors
    x = torch.as_tensor(r.data.arrays["test"][0])
    with torch.no_grad():
        assert torch.equal(loaded(x), r.model.eval()(x))
