"""Images end to end from the CLI: Fashion-MNIST files -> CNN -> predict PNGs (agrees with evaluate), and the
lecture's train/valid image folder -> fit -> predict, with per-file errors for unreadable images."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import trainwise
from trainwise.data.images import read_idx


def test_fashion_mnist_cnn_predict_agrees_with_evaluate(cli, fashion_dir, tmp_path):
    run = tmp_path / "run"
    code, out, err = cli("fit", "--data", "fashion-mnist", "--data-dir", str(fashion_dir), "--model", "cnn:16,32",
                         "--epochs", "8", "--lr", "0.003", "--quiet", "--run-dir", str(run))
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"]["recipe"]["builder"] == "cnn" and summary["data"]["input_shape"] == [1, 28, 28]
    assert summary["test"]["test/accuracy"] > 0.9  # bars at 10 heights: easy for a CNN
    X = read_idx(fashion_dir / "t10k-images-idx3-ubyte.gz")
    y = read_idx(fashion_dir / "t10k-labels-idx1-ubyte.gz")
    pngs = []
    for i in range(len(X)):
        pngs.append(str(tmp_path / f"test-{i}.png"))
        Image.fromarray(X[i]).save(pngs[-1])
    code, out, err = cli("predict", str(run), *pngs, "--output", str(tmp_path / "pred.csv"))
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"{pngs[0]}: ")
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert pred["file"].tolist() == pngs
    names = summary["data"]["class_names"]
    accuracy = float(np.mean([names.index(p) == t for p, t in zip(pred["prediction"], y)]))
    evaluated = trainwise.evaluate(run, force_test=True)
    assert accuracy == pytest.approx(evaluated["test/accuracy"], abs=1e-9)
    assert accuracy == pytest.approx(summary["test"]["test/accuracy"], abs=1e-9)
    # the probabilities are exactly the model's on the preprocessed test split
    model = trainwise.load_run(run).model.eval()
    with torch.no_grad():
        probs = torch.softmax(model((torch.from_numpy(X[:, None].astype(np.float32)) / 255 - 0.5) / 0.5), -1).numpy()
    np.testing.assert_allclose(pred[[f"prob_{n}" for n in names]].to_numpy(), probs, atol=1e-6)


def test_image_folder_trains_and_predicts_from_the_cli(cli, bitmoji_dir, tmp_path):
    run = tmp_path / "bm"
    code, out, err = cli("fit", "--data", str(bitmoji_dir), "--model", "cnn:8,16:32", "--image-size", "24",
                         "--augment", "flip,rotate=5,crop=0.9,jitter=0.1", "--epochs", "15", "--lr", "0.003",
                         "--quiet", "--run-dir", str(run))
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data"]["sizes"] == {"train": 60, "val": 20} and summary["test"] is None  # no test/ folder
    assert summary["best"]["val/accuracy"] >= 0.9
    pp = json.loads((run / "preprocess.json").read_text())
    assert pp["image"] == {"channels": 3, "size": [24, 24]}
    eva = sorted((bitmoji_dir / "valid" / "eva").glob("*.png"))[:2]
    other = sorted((bitmoji_dir / "valid" / "not_eva").glob("*.png"))[:2]
    big = tmp_path / "big.jpg"  # another size and format: resized and converted like the training images
    Image.open(other[0]).convert("RGB").resize((48, 48)).save(big, quality=95)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    files = [str(p) for p in (*eva, broken, *other, big)]
    code, out, err = cli("predict", str(run), *files, str(tmp_path / "missing.png"))
    assert code == 2
    lines = out.splitlines()
    assert [ln.split(":")[0] for ln in lines] == [files[0], files[1], files[3], files[4], files[5]]
    assert [ln.split(": ")[1].split(" ")[0] for ln in lines] == ["eva", "eva", "not_eva", "not_eva", "not_eva"]
    assert f"{broken}: ERROR cannot read image" in err and "missing.png: ERROR image" in err and "does not exist" in err
    assert "2 of 7 images could not be read" in err


def test_predict_refuses_a_table_for_an_image_run_and_images_for_a_table_run(cli, fashion_dir, tmp_path, small_csv):
    run = tmp_path / "r"
    assert cli("fit", "--data", "fashion-mnist", "--data-dir", str(fashion_dir), "--model", "mlp:16", "--epochs", "1",
               "--quiet", "--run-dir", str(run))[0] == 0
    code, _, err = cli("predict", str(run), str(small_csv))
    assert code == 2 and "was trained on images" in err
    table = tmp_path / "t"
    assert cli("fit", "--data", "iris", "--epochs", "1", "--quiet", "--run-dir", str(table))[0] == 0
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    code, _, err = cli("predict", str(table), str(tmp_path / "a.png"))
    assert code == 2 and "was trained on table rows (input shape [4])" in err


def test_cnn_on_table_data_is_refused(cli):
    code, _, err = cli("fit", "--data", "iris", "--model", "cnn:8", "--epochs", "1", "--quiet")
    assert code == 2 and "model 'cnn:8' needs images (channels, height, width), but these inputs have shape (4,)" in err
