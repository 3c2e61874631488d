"""Per-layer dropout in a spec: ``--dropout 0.3,0.1`` gives each hidden layer its own rate."""
import json

import pytest
import torch
from torch import nn

import trainwise
from trainwise.config import RunConfig
from trainwise.errors import TrainwiseError
from trainwise.models import build_model, resolve_model
from trainwise.models.recipe import check_recipe


def _rates(model):
    return [m.p for m in model.modules() if isinstance(m, nn.Dropout)]


def test_config_reads_one_rate_or_one_per_layer():
    assert RunConfig.build({"dropout": "0.3,0.1"}, source="option").dropout == [0.3, 0.1]
    assert RunConfig.build({"dropout": "0.2"}, source="option").dropout == 0.2  # one rate stays one number
    assert RunConfig.build({"dropout": [0.25]}, source="option").dropout == 0.25
    with pytest.raises(TrainwiseError, match=r"dropout='0.3,1.5': a dropout probability must be in \[0, 1\), got 1.5"):
        RunConfig.build({"dropout": "0.3,1.5"}, source="option")
    with pytest.raises(TrainwiseError, match="'0.3,x' is not a number or comma-separated numbers") as e:
        RunConfig.build({"dropout": "0.3,x"}, source="option")
    assert "0.3,0.1" in e.value.hint


@pytest.mark.parametrize("spec, shape, dropout, expected", [
    ("mlp:8,8,8", (4,), [0.3, 0.0, 0.1], [0.3, 0.1]),          # 0: no Dropout layer there
    ("mlp:8,8", (4,), 0.2, [0.2, 0.2]),
    ("cnn:4,8:16", (1, 8, 8), [0.1, 0.2, 0.5], [0.1, 0.2, 0.5]),  # conv blocks, then dense layers
    ("resmlp:8,3", (4,), [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]),      # one per residual block
    ("resnet:4,8", (1, 8, 8), 0.25, [0.25]),                     # one, before its head
])
def test_each_layer_gets_its_rate_and_the_recipe_round_trips(spec, shape, dropout, expected):
    recipe = resolve_model(spec, shape, 3, dropout=dropout)
    recipe = check_recipe(json.loads(json.dumps(recipe)), path="model.json")
    model = build_model(recipe)
    assert _rates(model) == expected
    assert model(torch.zeros(2, *shape)).shape == (2, 3)


@pytest.mark.parametrize("spec, shape, dropout, message", [
    ("mlp:64,32,16", (4,), [0.3, 0.1], "--dropout 0.3,0.1 gives 2 rates, but 'mlp:64,32,16' has 3 hidden layers"),
    ("linear", (4,), [0.3, 0.1], "gives 2 rates, but 'linear' has 0 hidden layers"),
    ("cnn:4,8", (1, 8, 8), [0.1], None),  # one rate in a list is still one rate for all
    ("cnn:4,8", (1, 8, 8), [0.1, 0.2, 0.3], "but 'cnn:4,8' has 2 conv blocks and dense layers"),
    ("resnet:4,8", (1, 8, 8), [0.1, 0.2], "but 'resnet:4,8' has 1 dropout layer (before its head)"),
])
def test_a_rate_list_that_does_not_fit_the_spec_is_an_error(spec, shape, dropout, message):
    if message is None:
        recipe = resolve_model(spec, shape, 3, dropout=dropout)
        assert recipe["dropout"] == 0.1 and _rates(build_model(check_recipe(recipe, path="model.json"))) == [0.1, 0.1]
        return
    with pytest.raises(TrainwiseError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        resolve_model(spec, shape, 3, dropout=dropout)
    assert "one rate per layer" in e.value.hint


def test_a_recipe_with_the_wrong_number_of_rates_is_damaged():
    recipe = resolve_model("mlp:8,8", (4,), 3, dropout=[0.1, 0.2])
    with pytest.raises(TrainwiseError, match="'dropout' has 3 rates for 2 layers"):
        check_recipe({**recipe, "dropout": [0.1, 0.2, 0.3]}, path="model.json")
    with pytest.raises(TrainwiseError, match="'dropout' is"):
        check_recipe({**recipe, "dropout": [0.1, 1.0]}, path="model.json")


def test_cli_run_with_per_layer_dropout_is_saved_and_reloaded(tmp_path, cli):
    code, _, err = cli("fit", "--data", "iris", "--model", "mlp:16,8", "--dropout", "0.3,0.1", "--epochs", "2",
                       "--quiet", "--run-dir", str(tmp_path / "run"))
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "model.json").read_text())["dropout"] == [0.3, 0.1]
    assert "dropout:\n- 0.3\n- 0.1\n" in (tmp_path / "run" / "config.yaml").read_text()
    assert _rates(trainwise.load_run(tmp_path / "run").model) == [0.3, 0.1]


def test_per_layer_dropout_restarts_stack_and_equal_one_by_one():
    base = dict(data="digits", model="mlp:32,16", dropout=[0.3, 0.1], epochs=3, restarts=2, quiet=True, checkpoint=False)
    vec, seq = trainwise.fit(**base, vectorize=True), trainwise.fit(**base, vectorize=False)
    assert vec.summary["restarts"]["runs"][0]["metrics"] == pytest.approx(seq.summary["restarts"]["runs"][0]["metrics"], rel=1e-5)
    assert vec.summary["test"] == pytest.approx(seq.summary["test"], rel=1e-5)
