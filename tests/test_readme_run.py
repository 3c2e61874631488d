"""Every command line of the README's bash blocks, run as printed (in-process, through `trainwise.cli.main`) in
a folder that holds small stand-ins for the files the README names (houses.csv, churn.csv, the Fashion-MNIST
files in the cache, an image folder, ...). A placeholder (``runs/<run>``) becomes the run folder a line before it
made; ``[...]`` parts run without and with them; ``~`` is the test's home folder. Each line must exit 0 and
leave what the README says it leaves. Not run with the others: the set-up lines (what CI runs), the two-machine
`torchrun` line and the TensorBoard server after `trainwise fit --tensorboard` (each started and stopped by its own
test below; the torchrun line as two launchers on the loopback address)."""
from __future__ import annotations

import io
import json
import os
import re
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

import trainwise
from tests.conftest import class_images
from trainwise.cli import main
from trainwise.data.images import write_idx

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = [(m.start(), m.group(1)) for m in re.finditer(r"^```bash\n(.*?)^```", README.read_text(), flags=re.S | re.M)]
NOT_RUN = ("bash scripts/setup.sh", "torchrun ", "-m trainwise fit --config run.yaml")  # see the module docstring

pytestmark = pytest.mark.slow


def _lines(block: str) -> list[str]:
    """A block's command lines: continuations joined, comments dropped, ``[...]`` expanded both ways."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not line or line.startswith(NOT_RUN):
            continue
        if "[" in line:
            out += [re.sub(r"\s*\[[^\]]*\]", "", line), re.sub(r"\[([^\]]*)\]", r"\1", line).replace(" ...", "")]
        else:
            out.append(line)
    return out


def _images(folder: Path, n: int, seed: int) -> None:
    X, y = class_images(n, 2, size=24, seed=seed, rgb=True)
    for i, (img, label) in enumerate(zip(X, y)):
        d = folder / ("eva" if label == 0 else "not_eva")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")


def _workspace(root: Path) -> Path:
    """The stand-ins: every file or folder a README line reads."""
    rng = np.random.default_rng(0)
    n = 160
    a, b, c = rng.normal(size=(3, n))
    city = rng.choice(["north", "south", "east"], n)
    houses = pd.DataFrame({"rooms": rng.integers(1, 6, n), "area": 50 + 20 * a, "age": np.where(rng.random(n) < 0.1, np.nan, 30 + 5 * b),
                           "city": city, "price": 100 + 15 * a + 5 * (city == "north") + rng.normal(size=n)})
    houses.to_csv(root / "houses.csv", index=False)
    churn = pd.DataFrame({"tenure": rng.integers(1, 60, n), "charges": 50 + 10 * b, "plan": rng.choice(["basic", "plus", "pro"], n),
                          "churn": np.where(b + (city == "east") > 0.4, "yes", "no")})
    churn.to_csv(root / "churn.csv", index=False)
    pd.DataFrame({"length": 200 + 80 * a, "links": rng.integers(0, 8, n), "hour": rng.integers(0, 24, n),
                  "spam": (a > 0.3).astype(int), "urgent": (b > 0).astype(int), "work": (c + 0.5 * a > 0).astype(int)}
                 ).to_csv(root / "mail.csv", index=False)
    churn.head(40).to_csv(root / "labelled.csv", index=False)
    churn.head(40).drop(columns="churn").to_csv(root / "new_rows.csv", index=False)
    X = rng.normal(size=(240, 8)).astype(np.float32)
    np.savez(root / "arrays.npz", X=X, y=(X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1))
    (root / "my_models.py").write_text("import math\nfrom torch import nn\n\n\ndef build(input_shape, output_size):\n"
                                       "    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 32), nn.ReLU(),\n"
                                       "                         nn.Linear(32, output_size))\n")
    for folder in (root / "cache" / "fashion-mnist", root / "home" / "data" / "fashion"):
        folder.mkdir(parents=True)
        for split, count, seed in (("train", 300, 0), ("t10k", 80, 1)):
            images, labels = class_images(count, 10, seed=seed)
            write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
            write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    images, _ = class_images(2, 10, seed=5)
    Image.fromarray(images[0]).save(root / "shoe.png")
    Image.fromarray(images[1]).save(root / "shirt.jpg")
    visits = pd.DataFrame({"visit_id": [f"v{i:04d}" for i in range(n)], "patient": rng.integers(0, 40, n), "age": 60 + 10 * a,
                           "notes": [f"note {i}" for i in range(n)], "readmitted": (a + c > 0).astype(int)})
    visits.to_csv(root / "visits.csv", index=False)
    sales = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=n).strftime("%Y-%m-%d"), "store": rng.integers(1, 4, n),
                          "price": 5 + a, "units": 20 - 3 * a + rng.normal(size=n)})
    sales.to_csv(root / "sales.csv", index=False)
    for name, rows in (("train", slice(0, 100)), ("val", slice(100, 130)), ("test", slice(130, 160))):
        pd.DataFrame({"x1": a[rows], "x2": b[rows], "y": (a[rows] > b[rows]).astype(int)}).to_csv(root / f"{name}.csv", index=False)
    pd.DataFrame({"amount": 100 + 30 * a, "age": 40 + 8 * b, "exposure": 0.5 + rng.random(n),
                  "fraud": (a > 0.8).astype(int)}).to_csv(root / "claims.csv", index=False)
    for split, count, seed in (("train", 40, 0), ("valid", 16, 1)):
        _images(root / "bitmoji" / split, count, seed)
        _images(root / "small_set" / split, count // 2, seed + 2)
    X, _ = class_images(2, 2, size=24, seed=9, rgb=True)
    Image.fromarray(X[0]).save(root / "eva-well-done.png")
    Image.fromarray(X[1]).save(root / "not-eva.jpg")
    return root


class Shell:
    """Runs README lines in ``root`` as the shell would (``cat F | ... -``, ``> F``, ``&&``, ``~``), placeholders
    standing for the run folders made before."""

    def __init__(self, root: Path, monkeypatch, capsys):
        self.root, self.capsys, self.runs = root, capsys, {}
        monkeypatch.chdir(root)
        monkeypatch.setenv("MPLCONFIGDIR", matplotlib.get_cachedir())  # HOME moves below: keep matplotlib's font cache
        monkeypatch.setenv("TRAINWISE_CACHE", str(root / "cache"))
        monkeypatch.setenv("HOME", str(root / "home"))
        self.monkeypatch = monkeypatch

    def made(self) -> set[str]:
        return {p.name for p in (self.root / "runs").glob("*")} if (self.root / "runs").is_dir() else set()

    def run(self, line: str, **placeholders: str) -> str:
        """Run ``line``; its stdout. ``placeholders``: ``<run>`` -> folder (a key of `runs`)."""
        for key, value in placeholders.items():
            line = line.replace(f"runs/<{key.replace('_', ' ')}>", f"runs/{self.runs[value]}")
        line = line.replace("~/", str(self.root / "home") + "/")
        out = ""
        for part in line.split(" && "):
            before = self.made()
            stdin = re.match(r"cat (\S+) \| (.*)$", part)
            if stdin:
                self.monkeypatch.setattr(sys, "stdin", io.StringIO((self.root / stdin.group(1)).read_text()))
                part = stdin.group(2)
            redirect = re.search(r"\s*>\s*(\S+)$", part)
            part = part[:redirect.start()] if redirect else part
            argv = shlex.split(part)
            assert argv[0] == "trainwise", line
            code = main(argv[1:])
            captured = self.capsys.readouterr()
            assert code == 0, f"{line}: exit {code}\n{captured.out[-2000:]}\n{captured.err[-2000:]}"
            out = captured.out
            if redirect:
                (self.root / redirect.group(1)).write_text(out)
            new = self.made() - before
            if len(new) == 1:
                self.runs[argv[1] + ":" + " ".join(argv[2:])] = self.runs["last"] = new.pop()
        return out

    def last(self) -> Path:
        return self.root / "runs" / self.runs["last"]

    def config(self) -> dict:
        """The last run's config.yaml."""
        return yaml.safe_load((self.last() / "config.yaml").read_text())


def _block(containing: str) -> list[str]:
    found = [_lines(b) for _, b in BLOCKS if containing in b]
    assert len(found) == 1, containing
    return found[0]


def test_the_blocks_this_module_runs_are_all_the_readme_has():
    blocks = ["trainwise fit --data houses.csv --target price --missing", "--data visits.csv", "--metrics f1_macro",
              "trainwise sanity --data digits", "--data bitmoji/", "resmlp:128,4", "--activation sigmoid", "--target spam,urgent,work",
              "--data breast-cancer --mlflow"]
    ran = {i for i, (_, b) in enumerate(BLOCKS) for key in blocks if key in b}
    skipped = {i for i, (_, b) in enumerate(BLOCKS) if not _lines(b)}
    assert ran | skipped == set(range(len(BLOCKS))) and len(ran) == len(blocks)


def test_quick_start_block(tmp_path, monkeypatch, capsys):
    sh = Shell(_workspace(tmp_path), monkeypatch, capsys)
    lines = _block("trainwise fit --data houses.csv --target price --missing")
    assert len(lines) == 15
    sh.run(lines[0])
    sh.runs["a"] = sh.runs["last"]
    assert json.loads((sh.last() / "summary.json").read_text())["data"]["name"] == "breast-cancer"
    sh.run(lines[1])
    assert sh.config()["target"] == "price" and sh.config()["missing"] == "median"
    sh.run(lines[2])
    sh.runs["table"] = sh.runs["b"] = sh.runs["last"]
    assert sh.config()["model"] == "tabular:k=1,embedding=none"
    sh.run(lines[3])
    assert sh.config()["nesterov"] is True and sh.config()["optimizer"] == "sgd"
    sh.run(lines[4])
    assert sh.config()["model"].endswith("my_models.py:build")
    sh.run(lines[5], run="table")  # a config file with an override
    assert sh.config()["epochs"] == 50
    assert "eval/accuracy" in sh.run(lines[6], run="table")
    sh.run(lines[7], run="table")
    assert len(pd.read_csv(tmp_path / "predictions.csv")) == 40
    sh.run(lines[8])
    sh.runs["images"] = sh.runs["last"]
    assert "flip" in str(sh.config()["augment"])
    assert len(sh.run(lines[9], run="images").strip().splitlines()) >= 2  # one line per image
    sh.run(lines[10], run="table")  # cat new_rows.csv | trainwise predict runs/<run> - > predictions.csv
    assert len(pd.read_csv(tmp_path / "predictions.csv")) == 40
    sh.run(lines[11], run="table")
    assert (tmp_path / "runs" / sh.runs["table"] / "model.onnx").stat().st_size > 1000
    listing = sh.run(lines[12])
    assert all(name[:12] in listing for name in (sh.runs["table"], sh.runs["a"])), listing  # (the names may be cut short)
    sh.run(re.sub(r"runs/([ab])(?=\s)", lambda m: f"runs/{sh.runs[m.group(1)]}", lines[13]))  # runs/a, runs/b: two runs
    assert "<html" in (tmp_path / "compare.html").read_text().lower()
    assert re.match(r"trainwise \d", sh.run(lines[14]))


def test_columns_and_splits_block(tmp_path, monkeypatch, capsys):
    sh = Shell(_workspace(tmp_path), monkeypatch, capsys)
    lines = _block("--data visits.csv")
    assert len(lines) == 4
    for line, (key, value) in zip(lines, (("group_column", "patient"), ("time_column", "date"), ("val_data", "val.csv"),
                                          ("weight_column", "exposure"))):
        sh.run(line)
        assert str(sh.config()[key]).endswith(value), line


def test_several_targets_block(tmp_path, monkeypatch, capsys):
    sh = Shell(_workspace(tmp_path), monkeypatch, capsys)
    regression, labels = _block("--target spam,urgent,work")
    sh.run(regression)
    s = json.loads((sh.last() / "summary.json").read_text())
    assert s["data"]["target"] == "price,rooms" and s["model"]["recipe"]["out_features"] == 2
    assert {"test/r2", "test/mae"} <= set(s["test"])
    sh.run(labels)
    s = json.loads((sh.last() / "summary.json").read_text())
    assert s["data"]["labels"] == ["spam", "urgent", "work"] and "test/exact_match" in s["test"]
    assert [r["label"] for r in s["test_per_class"]] == ["spam", "urgent", "work"]


def test_mlflow_block(tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    sh = Shell(_workspace(tmp_path), monkeypatch, capsys)
    [line] = _block("--data breast-cancer --mlflow")
    sh.run(line)
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "mlruns").is_dir()
    info = json.loads((sh.last() / "mlflow.json").read_text())
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(info["run_id"])
    summary = json.loads((sh.last() / "summary.json").read_text())
    assert run.data.params["data"] == "breast-cancer" and run.data.metrics["test/accuracy"] == pytest.approx(summary["test"]["test/accuracy"])


def test_metrics_block(tmp_path, monkeypatch, capsys):
    sh = Shell(_workspace(tmp_path), monkeypatch, capsys)
    lines = _block("--metrics f1_macro")
    sh.run(lines[0])
    assert "test/f1_macro" in json.loads((sh.last() / "summary.json").read_text())["test"]
    sh.run(lines[1])
    assert "test/auroc" in json.loads((sh.last() / "summary.json").read_text())["test"]


def test_training_options_block(tmp_path, monkeypatch, capsys):
    sh = Shell(_workspace(tmp_path), monkeypatch, capsys)
    lines = _block("trainwise sanity --data digits")
    assert len(lines) == 10
    for line in lines[:8]:
        sh.run(line)
    assert len(json.loads((sh.last() / "summary.json").read_text())["restarts"]["runs"]) == 5

    class CtrlC(trainwise.Callback):  # a run stopped by Ctrl-C after its second epoch: what --resume continues
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 2:
                raise KeyboardInterrupt

    for name in ("stopped", "stopped-too"):
        stopped = trainwise.fit(data="digits", schedule="step", run_dir=f"runs/{name}", callbacks=[CtrlC()], quiet=True)
        assert stopped.summary["status"] == "interrupted"
        sh.runs[name] = name
    sh.run(lines[8], run="stopped")
    done = json.loads((tmp_path / "runs" / "stopped" / "summary.json").read_text())
    assert done["status"] in ("completed", "early_stopped") and done["epochs_run"] > 2
    sh.run(lines[9], run="stopped-too")  # with another budget (its step schedule allows one)
    assert yaml.safe_load((tmp_path / "runs" / "stopped-too" / "config.yaml").read_text())["epochs"] == 300


def test_images_block(tmp_path, monkeypatch, capsys):
    sh = Shell(_workspace(tmp_path), monkeypatch, capsys)
    lines = _block("--data bitmoji/")
    assert len(lines) == 5
    sh.run(lines[0])
    assert sh.config()["model"] == "cnn:16,32" and json.loads((sh.last() / "summary.json").read_text())["data"]["sizes"]["test"] == 80
    sh.run(lines[1])
    assert str(sh.config()["data_dir"]).endswith("data/fashion")
    sh.run(lines[2])
    sh.runs["big_run"] = sh.runs["run"] = sh.runs["last"]
    sh.run(lines[3], big_run="big_run")
    assert sh.config()["train_last"] == 1 and sh.config()["init_from"]
    sh.run(lines[4], run="run")
    assert len(pd.read_csv(tmp_path / "predictions.csv")) == 2


def test_architectures_block(tmp_path, monkeypatch, capsys):
    sh = Shell(_workspace(tmp_path), monkeypatch, capsys)
    for line in _block("resmlp:128,4"):
        sh.run(line)
        assert ("resmlp" if "resmlp" in line else "resnet") in (sh.last() / "model.json").read_text()


def test_diagnostics_block(tmp_path, monkeypatch, capsys):
    sh = Shell(_workspace(tmp_path), monkeypatch, capsys)
    lines = _block("--activation sigmoid")
    sh.run(lines[0])
    assert "vanishing_gradients" in json.dumps(json.loads((sh.last() / "summary.json").read_text())["diagnostics"])
    assert "Total params: 17,226" in sh.run(lines[1])  # mlp:128,64 on 64 inputs, 10 classes
    assert re.search(r"PASS: largest relative error \S+ \(tolerance 1e-05\)", sh.run(lines[2]))  # gradcheck
    by_hand = sh.run(lines[3])  # backprop: the hand step equals torch.optim.SGD's
    assert "the hand step and torch.optim.SGD match (largest difference 0.0e+00)" in by_hand
    as_json = json.loads(sh.run(lines[4]))  # backprop --json --w3 0.5 --lr 0.01
    assert as_json["params"]["w3"] == 0.5
    assert all(g["value"] == pytest.approx(g["autograd"]) for g in as_json["gradients"].values())
    (sh.last() / "report.html").unlink()
    sh.run(lines[-2], run="last")  # report runs/<run>: rebuilt
    assert "<html" in (sh.last() / "report.html").read_text().lower()
    sh.run(lines[-1].split(" && ")[0])
    assert list((sh.last() / "tensorboard").glob("events.out.tfevents.*"))


def test_tensorboard_serves_the_runs_folder(tmp_path):
    (tmp_path / "runs").mkdir()
    exe = Path(sys.executable).with_name("tensorboard")
    p = subprocess.Popen([str(exe), "--logdir", "runs/", "--port", "0"], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, bufsize=0)
    try:
        deadline, seen, fd = time.time() + 60, b"", p.stdout.fileno()
        while time.time() < deadline and b"http://" not in seen:
            if select.select([fd], [], [], 0.5)[0]:  # the pipe itself, unbuffered: nothing waits in a reader's buffer
                chunk = os.read(fd, 4096)
                if not chunk:  # it exited
                    break
                seen += chunk
            elif p.poll() is not None:
                break
        assert b"http://" in seen, seen.decode(errors="replace")
    finally:
        p.kill()
        p.wait()


def test_the_two_machine_torchrun_line_runs_as_two_launchers_on_loopback(tmp_path):
    """The README's multi-node line as printed, two torchrun launchers standing in for the two machines: the
    rendezvous host becomes this machine's loopback address on a free port, 4 processes per node become 1 (this
    machine has 2 cores) and the shared folder a local one."""
    import socket

    [line] = [ln for b in (b for _, b in BLOCKS if "torchrun --nnodes" in b)
              for ln in (re.sub(r"(^|\s)#.*$", "", x).strip() for x in b.replace("\\\n", " ").splitlines()) if ln]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = (line.replace("HOST0:29500", f"127.0.0.1:{port}").replace("--nproc-per-node 4", "--nproc-per-node 1")
            .replace("/shared/runs/myjob", str(tmp_path / "runs" / "myjob")))
    args = shlex.split(line)
    assert args[0] == "torchrun" and "--config" in args
    args[0] = str(Path(sys.executable).with_name("torchrun"))
    (tmp_path / "run.yaml").write_text("data: digits\nmodel: mlp:32\nepochs: 3\nquiet: true\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outs
    summary = json.loads((tmp_path / "runs" / "myjob" / "summary.json").read_text())
    assert summary["distributed"] == {"nproc": 2, "backend": "gloo", "batch_per_rank": 32, "global_batch": 64}
    assert summary["epochs_run"] == 3 and summary["test_evaluations"] == 1 and summary["test"]["test/accuracy"] > 0.75


def test_the_search_space_block_is_a_space_tune_runs(tmp_path, monkeypatch, capsys):
    """The README's YAML block, saved as printed, is the space of a random search (two trials, 2 epochs)."""
    from trainwise.tune import grid_points, load_space

    [block] = re.findall(r"^```yaml\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    (tmp_path / "space.yaml").write_text(block)
    space, fixed = load_space(tmp_path / "space.yaml")
    assert set(space) == {"lr", "momentum", "batch_size", "model"} and fixed == {"optimizer": "sgd", "epochs": 40}
    assert len(grid_points(space)) == 3 * 3 * 4 * 2  # lr and momentum 3 points each, batch 16..64 by 16, 2 models
    monkeypatch.chdir(tmp_path)
    code = main(["tune", "--space", "space.yaml", "--method", "random", "--trials", "2", "--epochs", "2", "--no-retrain",
                 "--run-dir", "search"])
    assert code == 0, capsys.readouterr().err
    results = pd.read_csv(tmp_path / "search" / "results.csv")
    assert len(results) == 2 and results["lr"].between(1e-4, 1e-2).all() and results["momentum"].between(0.85, 0.99).all()
    assert results["batch_size"].isin([16, 32, 48, 64]).all() and results["model"].isin(["mlp:128,64", "mlp:256,128"]).all()
    for trial in results["trial"]:
        cfg = yaml.safe_load((tmp_path / "search" / f"trial-{trial}" / "config.yaml").read_text())
        assert cfg["optimizer"] == "sgd" and cfg["epochs"] == 2  # fixed from the block, epochs from the command line
