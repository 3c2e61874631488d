from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from trainwise.cli import main

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on 2 cores: one torch thread each, not two (oversubscribed
    torch.set_num_threads(1)               # OpenMP threads spin and wait: a test took 5x its time alone), and so
    os.environ["OMP_NUM_THREADS"] = "1"    # do the processes tests start (their runs equal the in-process ones)


@pytest.fixture(autouse=True)
def _no_drawing_helpers(monkeypatch):
    """The CLI run in-process draws its figures in-process: a drawing helper forked from a test process would
    outlive the test (and write a later test's figures late). tests/report/test_drawing.py tests the helpers, in
    processes of their own."""
    from trainwise.report import drawing

    monkeypatch.setattr(drawing, "start", lambda *a, **k: False)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    def run(*argv: str):
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def small_table(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Two numeric features, one text feature, a text label that depends on them."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    label = np.where(a + (color == "red") * 1.5 > 0.3, "yes", "no")
    return pd.DataFrame({"a": a, "b": b, "color": color, "label": label})


@pytest.fixture
def small_csv(tmp_path):
    """`small_table`'s 120 rows as a CSV file."""
    path = tmp_path / "small.csv"
    small_table().to_csv(path, index=False)
    return path


@pytest.fixture
def blobs():
    """Three well-separated Gaussian blobs in 4-D (300 rows)."""
    rng = np.random.default_rng(1)
    centers = rng.normal(scale=4, size=(3, 4))
    y = np.repeat(np.arange(3), 100)
    X = centers[y] + rng.normal(size=(300, 4))
    return X.astype(np.float32), y


def class_images(n: int, n_classes: int, size: int = 28, seed: int = 0, rgb: bool = False):
    """uint8 images whose class is a bright horizontal bar at a class-specific height, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = rng.integers(0, 60, size=(n, size, size, 3) if rgb else (n, size, size)).astype(np.uint8)
    rows = (1 + y * (size - 3) // max(n_classes - 1, 1)).astype(int)
    for i, r in enumerate(rows):
        X[i, r:r + 2, 2:size - 2] = 230
    return X, y.astype(np.uint8)


@pytest.fixture
def fashion_dir(tmp_path):
    """The 4 Fashion-MNIST IDX files (gzipped), 400 training and 100 test images of 10 learnable classes."""
    from trainwise.data.images import write_idx

    d = tmp_path / "fashion"
    d.mkdir()
    for split, n, seed in (("train", 400, 0), ("t10k", 100, 1)):
        X, y = class_images(n, 10, seed=seed)
        write_idx(d / f"{split}-images-idx3-ubyte.gz", X)
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", y)
    return d


@pytest.fixture
def bitmoji_dir(tmp_path):
    """The lecture's layout: train/ and valid/ with one folder per class (RGB PNGs of mixed sizes)."""
    from PIL import Image

    root = tmp_path / "bitmoji"
    for split, n, seed in (("train", 60, 0), ("valid", 20, 1)):
        X, y = class_images(n, 2, size=24, seed=seed, rgb=True)
        for i, (img, label) in enumerate(zip(X, y)):
            folder = root / split / ("eva" if label == 0 else "not_eva")
            folder.mkdir(parents=True, exist_ok=True)
            im = Image.fromarray(img)
            (im.resize((32, 32)) if i % 7 == 3 else im).save(folder / f"{i}.png")  # some need resizing
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINWISE_CACHE", str(tmp_path / "cache"))
