"""Tiny runs the report tests share: an image run (IDX files, augmented) and a regression run."""
import pytest

import trainwise
from tests.conftest import class_images
from trainwise.data.images import write_idx


@pytest.fixture(scope="session")
def tiny_fashion(tmp_path_factory):
    """Fashion-MNIST's file layout and class names: 200 training and 60 test images of 10 learnable classes."""
    d = tmp_path_factory.mktemp("fashion")
    for split, n, seed in (("train", 200, 0), ("t10k", 60, 1)):
        X, y = class_images(n, 10, seed=seed)
        write_idx(d / f"{split}-images-idx3-ubyte.gz", X)
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", y)
    return d


@pytest.fixture(scope="session")
def image_run(tiny_fashion, tmp_path_factory):
    return trainwise.fit("fashion-mnist", data_dir=str(tiny_fashion), model="mlp:16", epochs=2, augment="flip,rotate=10",
                         quiet=True, checkpoint=False, run_dir=tmp_path_factory.mktemp("images") / "r")


@pytest.fixture(scope="session")
def regression_run(tmp_path_factory):
    return trainwise.fit("diabetes", epochs=3, quiet=True, checkpoint=False, run_dir=tmp_path_factory.mktemp("reg") / "r")
