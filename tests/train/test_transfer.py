"""Transfer learning: start from a run's weights, replace the head, freeze, unfreeze with a lower LR."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import trainwise
from trainwise.errors import TrainwiseError
from trainwise.models.transfer import freeze, parameter_layers


@pytest.fixture
def source_run(fashion_dir, tmp_path):
    """A 10-class CNN trained on Fashion-MNIST-format files."""
    return trainwise.fit("fashion-mnist", data_dir=str(fashion_dir), model="cnn:8,16", epochs=3, lr=3e-3, quiet=True,
                         run_dir=str(tmp_path / "source"))


def _target(bitmoji_dir, tmp_path, name, **options):
    """The 2-class image folder, as 1x28x28 images so the source's layers fit."""
    return trainwise.fit(str(bitmoji_dir), model="cnn:8,16", channels="1", image_size="28", lr=3e-3, quiet=True,
                         early_stopping=False, restore_best=False, run_dir=str(tmp_path / name), **options)


def test_frozen_layers_stay_and_the_new_head_trains(source_run, bitmoji_dir, tmp_path):
    src = {k: v.clone() for k, v in source_run.model.state_dict().items()}
    r = _target(bitmoji_dir, tmp_path, "ft", init_from=str(source_run.run_dir), train_last=1, epochs=6)
    head = parameter_layers(r.model)[-1]
    t = r.summary["transfer"]
    assert t["loaded"] == 4 and t["replaced"] == [f"{head}.bias", f"{head}.weight"] and t["unused"] == []
    assert t["frozen"] == [k for k in src if not k.startswith(head + ".")]
    assert t["trainable_parameters"] == 16 * 7 * 7 * 2 + 2
    after = r.model.state_dict()
    for k in t["frozen"]:
        assert torch.equal(after[k], src[k]), k  # frozen: exactly the source's weights
    torch.manual_seed(0)
    fresh = trainwise.build_model(r.summary["model"]["recipe"]).state_dict()
    assert after[f"{head}.weight"].shape == (2, 784) and not torch.equal(after[f"{head}.weight"], fresh[f"{head}.weight"])
    assert r.history[-1]["train/loss"] < r.history[0]["train/loss"] and r.history[-1]["val/accuracy"] >= 0.9


def test_unfreeze_after_k_epochs_with_a_lower_lr(source_run, bitmoji_dir, tmp_path):
    src = {k: v.clone() for k, v in source_run.model.state_dict().items()}
    r = _target(bitmoji_dir, tmp_path, "unfreeze", init_from=str(source_run.run_dir), train_last=1, epochs=4,
                unfreeze_after=2, unfreeze_lr_factor=0.1, schedule="none")
    assert [round(h["lr"], 8) for h in r.history] == [3e-3, 3e-3, 3e-4, 3e-4]
    conv = [k for k in r.summary["transfer"]["frozen"] if k.endswith("weight")][0]
    assert not torch.equal(r.model.state_dict()[conv], src[conv])  # trained once unfrozen
    assert all(p.requires_grad for p in r.model.parameters())


def test_freeze_by_name_and_from_a_safetensors_file(source_run, bitmoji_dir, tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source_run.model.state_dict().items()}, str(path))
    first = parameter_layers(source_run.model)[0]
    r = _target(bitmoji_dir, tmp_path, "byname", init_from=str(path), freeze=f"{first}.", epochs=2)
    assert r.summary["transfer"]["frozen"] == [f"{first}.weight", f"{first}.bias"]
    assert torch.equal(r.model.state_dict()[f"{first}.weight"], source_run.model.state_dict()[f"{first}.weight"])


def test_freeze_counts_layers_with_parameters():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    assert parameter_layers(m) == ["0", "1", "4"]
    assert freeze(m, train_last=2) == ["0.weight", "0.bias"]
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["1.weight", "1.bias", "4.weight", "4.bias"]


def test_transfer_errors(source_run, bitmoji_dir, tmp_path):
    with pytest.raises(TrainwiseError, match="init_from='.*nowhere': no such run folder or .safetensors file"):
        _target(bitmoji_dir, tmp_path, "e1", init_from=str(tmp_path / "nowhere"), epochs=1)
    with pytest.raises(TrainwiseError, match="none of its 6 tensors match the model's names and shapes.*HINT: build the same architecture"):
        trainwise.fit(str(bitmoji_dir), model="mlp:8", quiet=True, epochs=1, init_from=str(source_run.run_dir),
                      run_dir=str(tmp_path / "e2"))
    with pytest.raises(TrainwiseError, match=r"train_last=9 but the model has only 3 layers with parameters.*HINT: use --train-last 3 or less"):
        _target(bitmoji_dir, tmp_path, "e3", train_last=9, epochs=1)
    with pytest.raises(TrainwiseError, match="freeze: no parameter name starts with 'conv1'"):
        _target(bitmoji_dir, tmp_path, "e4", freeze="conv1", epochs=1)


def test_summary_shows_what_fine_tuning_trains(source_run, bitmoji_dir, cli):
    code, out, _ = cli("summary", "--data", str(bitmoji_dir), "--model", "cnn:8,16", "--channels", "1", "--image-size", "28",
                       "--init-from", str(source_run.run_dir), "--train-last", "1")
    assert code == 0, out
    # convs 1*8*9+8 = 80 and 8*16*9+16 = 1,168 frozen; the new head 784*2+2 = 1,570 trains
    assert "parameters: 2,818 (1,570 trainable, 1,248 frozen)" in out
