"""Image sources: MNIST/Fashion-MNIST IDX files and folders of images (one subfolder per class).

Images become float32 arrays (N, C, H, W) with pixels in [0, 1]; normalization is preprocessing (fit or
fixed, saved with the run) so `predict` applies exactly the same steps to new files. A folder is decoded
once and cached as one uint8 array (in this process and on disk, keyed by the files' names, sizes and
modification times).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import urllib.request
from pathlib import Path

import numpy as np

from ..errors import TrainwiseError
from ..options import parse_image_size
from ..runs import atomic_write
from .raw import RawData

__all__ = ["IDX_SETS", "IMAGE_SUFFIXES", "to_unit", "read_idx", "write_idx", "load_idx_set", "load_image_folder", "read_image",
           "parse_image_size", "cache_dir"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# name -> (download mirrors, md5 of each official .gz file, class names); checksums as published with the sets
IDX_SETS = {
    "fashion-mnist": (
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
         "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]),
    "mnist": (
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
         "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
         "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        [str(i) for i in range(10)]),
}
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MEMORY: dict[str, tuple[np.ndarray, dict]] = {}  # folder cache key -> decoded images (uint8), info


def to_unit(X: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1] (one allocation)."""
    return np.multiply(X, np.float32(1 / 255), dtype=np.float32)


def cache_dir() -> Path:
    """Where downloads and decoded image folders are kept: $TRAINWISE_CACHE or ~/.cache/trainwise."""
    return Path(os.environ.get("TRAINWISE_CACHE") or Path.home() / ".cache" / "trainwise")


# --- IDX ----------------------------------------------------------------------------------------
def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (raw or gzipped) as a numpy array.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "x-idx3-ubyte"
    >>> write_idx(p, np.arange(8, dtype=np.uint8).reshape(2, 2, 2)); read_idx(p)[1].tolist()
    [[4, 5], [6, 7]]
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise TrainwiseError(f"cannot read IDX file '{path}': {e}", hint="re-download or re-extract it") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise TrainwiseError(f"'{path}' is not an IDX file (its first bytes are {data[:4].hex()})",
                             hint="give the MNIST-format files (train-images-idx3-ubyte[.gz], ...) unchanged")
    ndim = data[3]
    dims = np.frombuffer(data, ">i4", count=ndim, offset=4).tolist()
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise TrainwiseError(f"IDX file '{path}' holds {len(data)} bytes; its header {dims} promises {expected}",
                             hint="the file is truncated or damaged: download it again")
    return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when the name ends in .gz)."""
    code = {v: k for k, v in _IDX_TYPES.items()}[np.dtype(array.dtype).newbyteorder(">").str.replace("|", ">")]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    payload = header + np.ascontiguousarray(array, array.dtype.newbyteorder(">")).tobytes()
    atomic_write(path, gzip.compress(payload, compresslevel=1) if str(path).endswith(".gz") else payload)


def load_idx_set(name: str, data_dir: str | Path | None = None, *, download: bool = True) -> RawData:
    """MNIST or Fashion-MNIST from ``data_dir`` (raw or .gz, the standard file names), downloading the
    missing files with checksums into the cache when ``data_dir`` is not given. The official test files are
    the test split; the validation split is carved from the training files (stratified)."""
    mirrors, md5s, classes = IDX_SETS[name]
    folder = Path(data_dir) if data_dir else cache_dir() / name
    found = {}
    for stem in (s for pair in _FILES.values() for s in pair):
        hit = next((folder / n for n in (stem, stem + ".gz") if (folder / n).is_file()), None)
        if hit is None and data_dir is None and download:
            hit = _download(mirrors, stem + ".gz", md5s[stem + ".gz"], folder)
        if hit is None:
            wanted = ", ".join(f"{s}.gz" for pair in _FILES.values() for s in pair)
            raise TrainwiseError(f"{name}: '{stem}[.gz]' is not in '{folder}'",
                                 hint=f"put the 4 standard files ({wanted}; gzipped or not) in {folder}, or run once "
                                      f"without --data-dir on a machine with internet (they are cached in {cache_dir() / name})")
        found[stem] = hit
    parts = {}
    for split, (images, labels) in _FILES.items():
        X, y = read_idx(found[images]), read_idx(found[labels])
        if X.ndim != 3 or y.ndim != 1 or len(X) != len(y):
            raise TrainwiseError(f"{name}: '{found[images].name}' has shape {X.shape} and '{found[labels].name}' {y.shape}",
                                 hint="images must be (N, rows, cols) and labels (N,): use the files unchanged")
        parts[split] = (X, y)
    (Xtr, ytr), (Xte, yte) = parts["train"], parts["test"]
    X = to_unit(np.concatenate([Xtr, Xte])[:, None])
    raw = RawData(X, np.concatenate([ytr, yte]).astype(np.int64), name, "classification", class_names=list(classes))
    raw.given_splits = {"train": np.arange(len(ytr)), "test": np.arange(len(ytr), len(ytr) + len(yte))}
    raw.notes.append(f"{name} from {folder}: {len(ytr)} training and {len(yte)} test images")
    return raw


def _download(mirrors: tuple[str, ...], filename: str, md5: str, folder: Path) -> Path | None:
    """Fetch one file from the first mirror that answers, checking its MD5; None when offline."""
    errors = []
    for base in mirrors:
        try:
            with urllib.request.urlopen(base + filename, timeout=20) as r:
                payload = r.read()
        except OSError as e:
            errors.append(f"{base}: {e}")
            continue
        got = hashlib.md5(payload, usedforsecurity=False).hexdigest()
        if got != md5:
            raise TrainwiseError(f"download of {filename} from {base} has MD5 {got}, expected {md5}",
                                 hint="the mirror served a damaged file; try again later or place the file by hand")
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / filename, payload)
        return folder / filename
    return None


# --- image files and folders --------------------------------------------------------------------
def read_image(path: str | Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """One image file as uint8 (C, H, W): converted to grayscale (1) or RGB (3), resized (bilinear) to ``size``."""
    from PIL import Image, UnidentifiedImageError  # Pillow: loaded only when image files are read

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise TrainwiseError(f"image '{path}' does not exist", hint="check the path") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise TrainwiseError(f"cannot read image '{path}': {e}", hint="the file is damaged or not an image; re-export it as PNG or JPEG") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_image_folder(folder: str | Path, *, image_size=None, channels: str | int = "auto") -> RawData:
    """A folder with one subfolder of images per class, or the lecture's ``train/`` and ``valid/`` (or ``val/``,
    optional ``test/``) folders of class subfolders, which are then the given splits."""
    folder = Path(folder)
    split_dirs = {s: d for s, names in (("train", ("train",)), ("val", ("valid", "val")), ("test", ("test",)))
                  for d in [next((folder / n for n in names if (folder / n).is_dir()), None)] if d is not None}
    if "train" in split_dirs and "val" not in split_dirs:
        raise TrainwiseError(f"'{folder}' has a train/ folder but no valid/ (or val/) folder",
                             hint="add valid/ with the same class subfolders, or put the class folders directly in the folder")
    roots = split_dirs if "train" in split_dirs else {"all": folder}
    files: dict[str, list[tuple[Path, str]]] = {}
    for split, root in roots.items():
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        files[split] = [(p, c) for c in classes for p in sorted((root / c).rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files[split]:
            raise TrainwiseError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in class subfolders of '{root}'",
                                 hint="lay images out as FOLDER/<class name>/<image>.png (or FOLDER/train/<class>/..., FOLDER/valid/<class>/...)")
    names = sorted({c for pairs in files.values() for _, c in pairs})
    train_names = sorted({c for _, c in files.get("train", files.get("all"))})
    if names != train_names:
        raise TrainwiseError(f"'{folder}': classes {sorted(set(names) - set(train_names))} have images outside train/ only",
                             hint="give every class a train/<class>/ folder with images")
    everything = [pf for pairs in files.values() for pf in pairs]
    size = parse_image_size(image_size)
    X, info = _decode_all([p for p, _ in everything], size, channels)
    y = np.asarray([names.index(c) for _, c in everything], dtype=np.int64)
    raw = RawData(to_unit(X), y, str(folder), "classification", class_names=names)
    if "train" in files:
        bounds = np.cumsum([0] + [len(files[s]) for s in files])
        raw.given_splits = {s: np.arange(bounds[i], bounds[i + 1]) for i, s in enumerate(files)}
    raw.notes.append(f"{len(y)} images from '{folder}' as {info['channels']}x{info['size'][0]}x{info['size'][1]}"
                     + (f" ({info['resized']} resized)" if info["resized"] else ""))
    return raw


def _decode_all(files: list[Path], size, channels) -> tuple[np.ndarray, dict]:
    """Decode every image once (memory, then disk cache), as uint8 (N, C, H, W)."""
    from PIL import Image  # Pillow: loaded only when image files are read

    stats = [(str(p.resolve()), st.st_size, st.st_mtime_ns) for p in files for st in [p.stat()]]
    key = hashlib.sha1(repr((stats, size, channels)).encode()).hexdigest()[:20]
    if key in _MEMORY:
        return _MEMORY[key]
    disk = cache_dir() / "images" / f"{key}.npz"
    if disk.is_file():
        with np.load(disk, allow_pickle=False) as z:
            X = z["X"]
            info = {"channels": X.shape[1], "size": list(X.shape[2:]), "resized": int(z["resized"])}
    else:
        sizes, modes = [], set()
        for p in files:  # headers only: the target size and whether any image has colour
            try:
                with Image.open(p) as img:
                    sizes.append((img.size[1], img.size[0]))
                    modes.add(img.mode)
            except OSError as e:
                raise TrainwiseError(f"cannot read image '{p}': {e}", hint="remove or replace the damaged file") from None
        size = size or sizes[0]
        c = int(channels) if channels != "auto" else (1 if modes <= {"1", "L", "LA", "I;16", "I", "F"} else 3)
        X = np.stack([read_image(p, c, size) for p in files])
        info = {"channels": c, "size": list(size), "resized": sum(1 for s in sizes if s != tuple(size))}
        disk.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, X=X, resized=info["resized"])
        atomic_write(disk, buf.getvalue())
    _MEMORY[key] = (X, info)
    return X, info
