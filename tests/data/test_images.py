"""IDX files, MNIST/Fashion-MNIST loading and download, image folders and their cache."""
from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import class_images
from trainwise.data import images, load_source, prepare
from trainwise.data.images import load_idx_set, load_image_folder, read_idx, write_idx
from trainwise.errors import TrainwiseError


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path, name):
    X = np.random.default_rng(0).integers(0, 256, size=(5, 3, 4)).astype(np.uint8)
    write_idx(tmp_path / name, X)
    raw = (gzip.decompress if name.endswith(".gz") else bytes)((tmp_path / name).read_bytes())
    assert raw[:4] == bytes([0, 0, 0x08, 3]) and raw[4:8] == (5).to_bytes(4, "big")  # the format's header
    np.testing.assert_array_equal(read_idx(tmp_path / name), X)
    f = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_idx(tmp_path / "f-idx2", f)
    np.testing.assert_array_equal(read_idx(tmp_path / "f-idx2"), f)


def test_idx_errors_name_the_file(tmp_path):
    (tmp_path / "bad").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(TrainwiseError, match=r"'.*bad' is not an IDX file \(its first bytes are 504b0304\)"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "cut-idx1-ubyte", np.arange(10, dtype=np.uint8))
    (tmp_path / "cut-idx1-ubyte").write_bytes((tmp_path / "cut-idx1-ubyte").read_bytes()[:-3])
    with pytest.raises(TrainwiseError, match=r"holds 15 bytes; its header \[10\] promises 18.*truncated"):
        read_idx(tmp_path / "cut-idx1-ubyte")


def test_fashion_mnist_from_a_directory(fashion_dir):
    raw = load_source("fashion-mnist", data_dir=str(fashion_dir))
    assert raw.X.shape == (500, 1, 28, 28) and raw.X.dtype == np.float32
    assert raw.X.min() >= 0 and raw.X.max() <= 1 and raw.class_names[0] == "T-shirt/top" and raw.class_names[9] == "Ankle boot"
    prep = prepare(raw, split=(0.7, 0.15, 0.15), seed=0)
    sizes = {k: len(v) for k, v in prep.indices.items()}
    # the official test files stay the test split; validation is 15/85 of the training files, stratified
    assert sizes == {"train": 329, "val": 71, "test": 100}
    assert set(prep.indices["test"]) == set(range(400, 500))
    assert np.bincount(prep.arrays["val"][1]).min() >= 7
    X, _ = prep.arrays["train"]  # the lecture's normalization: (x - 0.5) / 0.5, so pixels land in [-1, 1]
    assert X.min() >= -1 and X.max() <= 1 and X.min() < -0.5 and X.max() > 0.5
    raw_gz_free = fashion_dir.parent / "plain"
    raw_gz_free.mkdir()
    for f in fashion_dir.iterdir():  # uncompressed files work too
        (raw_gz_free / f.name.removesuffix(".gz")).write_bytes(gzip.decompress(f.read_bytes()))
    np.testing.assert_array_equal(load_source("mnist", data_dir=str(raw_gz_free)).X, raw.X)


def test_missing_files_say_which_and_where(tmp_path):
    with pytest.raises(TrainwiseError) as e:
        load_idx_set("fashion-mnist", tmp_path)
    msg = str(e.value)
    assert "'train-images-idx3-ubyte[.gz]' is not in" in msg and str(tmp_path) in msg
    assert "t10k-labels-idx1-ubyte.gz" in msg and "HINT: put the 4 standard files" in msg


def _mirror(tmp_path, monkeypatch, corrupt: str | None = None):
    src = tmp_path / "mirror"
    src.mkdir()
    md5s = {}
    for split, n in (("train", 40), ("t10k", 20)):
        X, y = class_images(n, 10)
        for kind, arr in (("images-idx3", X), ("labels-idx1", y)):
            name = f"{split}-{kind}-ubyte.gz"
            write_idx(src / name, arr)
            md5s[name] = hashlib.md5((src / name).read_bytes()).hexdigest()
    if corrupt:
        md5s[corrupt] = "0" * 32
    monkeypatch.setitem(images.IDX_SETS, "fashion-mnist",
                        (("file:///nonexistent/mirror/", src.as_uri() + "/"), md5s, images.IDX_SETS["fashion-mnist"][2]))


def test_download_checks_md5_and_caches(tmp_path, monkeypatch):
    _mirror(tmp_path, monkeypatch)
    raw = load_idx_set("fashion-mnist")  # the first mirror fails, the second answers
    assert raw.X.shape == (60, 1, 28, 28)
    cached = sorted(p.name for p in (tmp_path / "cache" / "fashion-mnist").iterdir())
    assert cached == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    monkeypatch.setitem(images.IDX_SETS, "fashion-mnist", (("file:///nonexistent/",), {}, images.IDX_SETS["fashion-mnist"][2]))
    assert load_idx_set("fashion-mnist").X.shape == (60, 1, 28, 28)  # from the cache, no network


def test_download_with_a_wrong_checksum_is_refused(tmp_path, monkeypatch):
    _mirror(tmp_path, monkeypatch, corrupt="train-labels-idx1-ubyte.gz")
    with pytest.raises(TrainwiseError, match="download of train-labels-idx1-ubyte.gz from .* has MD5 [0-9a-f]{32}, expected 0{32}"):
        load_idx_set("fashion-mnist")
    assert not (tmp_path / "cache" / "fashion-mnist" / "train-labels-idx1-ubyte.gz").exists()


def test_offline_message(tmp_path, monkeypatch):
    monkeypatch.setitem(images.IDX_SETS, "mnist", (("file:///nonexistent/",), images.IDX_SETS["mnist"][1], ["0"]))
    with pytest.raises(TrainwiseError, match=r"mnist: 'train-images-idx3-ubyte\[.gz\]' is not in '.*cache/mnist'.*"
                                             r"or run once without --data-dir on a machine with internet"):
        load_idx_set("mnist")


def test_image_folder_in_the_lecture_layout(bitmoji_dir):
    raw = load_image_folder(bitmoji_dir)
    assert raw.class_names == ["eva", "not_eva"]
    assert raw.X.shape == (80, 3, 24, 24)  # RGB; 32x32 files resized to the first image's 24x24
    assert {k: len(v) for k, v in raw.given_splits.items()} == {"train": 60, "val": 20}
    assert "(12 resized)" in raw.notes[0]  # i % 7 == 3: 9 of 60 train, 3 of 20 valid
    prep = prepare(raw, seed=0)
    assert sorted(prep.arrays) == ["train", "val"]  # no test/ folder: no test split
    small = load_image_folder(bitmoji_dir, image_size="16,12", channels="1")
    assert small.X.shape == (80, 1, 16, 12)


def test_image_folder_one_subfolder_per_class_is_split(tmp_path):
    X, y = class_images(40, 2, size=10)
    for i, (img, label) in enumerate(zip(X, y)):
        (tmp_path / "imgs" / f"c{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "imgs" / f"c{label}" / f"{i}.png")
    raw = load_source(str(tmp_path / "imgs"))
    assert raw.X.shape == (40, 1, 10, 10) and raw.given_splits is None  # grayscale kept as 1 channel
    order = [i for c in (0, 1) for i in sorted((j for j in range(40) if y[j] == c), key=lambda j: f"{j}.png")]
    np.testing.assert_array_equal((raw.X[:, 0] * 255).round().astype(np.uint8), X[order])  # lossless PNG round trip
    assert raw.y.tolist() == y[order].tolist()
    prep = prepare(raw, split=(0.5, 0.25, 0.25), seed=0)
    assert {k: len(v) for k, v in prep.indices.items()} == {"train": 20, "val": 10, "test": 10}


def test_folder_is_decoded_once_and_cached(bitmoji_dir, tmp_path, monkeypatch):
    load_image_folder(bitmoji_dir)
    files = list((tmp_path / "cache" / "images").glob("*.npz"))
    assert len(files) == 1
    images._MEMORY.clear()
    calls = []
    monkeypatch.setattr(images, "read_image", lambda *a: calls.append(a))
    again = load_image_folder(bitmoji_dir)  # from the disk cache: nothing decoded
    assert calls == [] and again.X.shape == (80, 3, 24, 24)


def test_damaged_image_in_a_folder_is_named(bitmoji_dir):
    (bitmoji_dir / "train" / "eva" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(TrainwiseError, match=r"cannot read image '.*broken.png'.*HINT: remove or replace the damaged file"):
        load_image_folder(bitmoji_dir)


def test_folder_errors(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(TrainwiseError, match="has a train/ folder but no valid/"):
        load_image_folder(tmp_path)
    (tmp_path / "valid" / "a").mkdir(parents=True)
    with pytest.raises(TrainwiseError, match="no images .* in class subfolders of '.*train'"):
        load_image_folder(tmp_path)


@pytest.mark.parametrize("value, size", [(28, (28, 28)), ("64,48", (64, 48)), ("64x48", (64, 48)), (32.0, (32, 32)), ([16, 24], (16, 24)),
                                         (np.int64(28), (28, 28)), (np.float32(32.0), (32, 32))])
def test_an_image_size_is_one_or_two_whole_numbers(value, size):
    from trainwise.options import parse_image_size

    assert parse_image_size(value) == size


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 28.5, np.float32(28.5), True, np.bool_(True), 10**30, "big", "0",
                                   [28, 28, 3]])
def test_a_size_that_is_not_whole_pixels_is_refused_with_a_hint(value):
    from trainwise.options import parse_image_size

    with pytest.raises(TrainwiseError, match=r"is not a size\. HINT: give one number \(28\) or height,width \(64,48\)"):
        parse_image_size(value)
