"""Bad input, table-driven: every case is refused with exit status 2 (CLI) or a TrainwiseError (API) whose message
names the file, argument or column and whose HINT gives the fix — and nothing is left behind: no runs/ folder,
no --run-dir/--out folder, no output file. Bad input is found before anything is written (issue 13, points 6-11)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import trainwise
from trainwise import TrainwiseError
from trainwise.cli import main
from trainwise.config import RunConfig, load_config
from trainwise.data import TensorBatches
from trainwise.tune import cross_validate, sanity, tune

MODEL_CODE = """import torch
def build(input_shape, output_size):
    return torch.nn.Linear(5, output_size)
def bad(input_shape, output_size):
    raise RuntimeError("boom")
def wrong_out(input_shape, output_size):
    return torch.nn.Linear(input_shape[0], output_size + 1)
def number(input_shape, output_size):
    return 5
"""
SPACE = "space:\n  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}\nfixed: {epochs: 2, data: iris}\n"


def _table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "color": rng.choice(["red", "green"], n),
                         "label": rng.choice(["yes", "no"], n)})


def _with(col: str, row: int, value, df: pd.DataFrame | None = None) -> pd.DataFrame:
    df = (_table() if df is None else df).astype({col: object})
    df.loc[row, col] = value
    return df


def write_inputs(root: Path) -> None:
    """Every input file the cases name, written into ``root`` (the tests' working directory)."""
    _table().to_csv(root / "ok.csv", index=False)
    _with("a", 3, np.inf).to_csv(root / "inf.csv", index=False)
    _with("b", 10, "1e39").to_csv(root / "huge.csv", index=False)
    _with("a", 5, "abc").to_csv(root / "abc.csv", index=False)
    _with("a", 5, "?").to_csv(root / "question.csv", index=False)
    _with("a", 7, "-").to_csv(root / "dash.csv", index=False)
    _with("label", 2, "maybe", _table().assign(label=np.arange(60) % 3)).to_csv(root / "label_text.csv", index=False)
    _table().assign(a=np.nan).to_csv(root / "empty_column.csv", index=False)
    _table().assign(label="yes").to_csv(root / "one_class.csv", index=False)
    _table().assign(label=np.linspace(0, 1, 60)).to_csv(root / "float_label.csv", index=False)
    _table().drop(columns="label").assign(a="text").to_csv(root / "text_in_numbers.csv", index=False)
    _table()[["a", "color"]].to_csv(root / "no_b.csv", index=False)
    _table()[["label"]].to_csv(root / "only_target.csv", index=False)
    (root / "empty.csv").write_bytes(b"")
    (root / "header_only.csv").write_text("a,b,label\n")
    np.savez(root / "objects.npz", X=np.array([[1, "a"]], dtype=object), y=np.array([1], dtype=object))
    np.savez(root / "no_arrays.npz")
    np.savez(root / "mismatch.npz", X=np.zeros((10, 2)), y=np.zeros(9))
    (root / "junk.npz").write_bytes(b"not a zip archive")
    (root / "m.py").write_text(MODEL_CODE)
    (root / "empty.yaml").write_text("")
    (root / "comments.yaml").write_text("# nothing here\n")
    (root / "list.yaml").write_text("- lr\n- epochs\n")
    (root / "broken.yaml").write_text("lr: [0.1\n")
    (root / "int_key.yaml").write_text("1: 2\n")
    (root / "alias.yaml").write_text("data: iris\nlearning_rate: 0.1\n")
    (root / "inf.yaml").write_text("data: iris\nlr: .inf\n")
    (root / "bytes.yaml").write_bytes(b"\xff\xfe\x00lr\x00")
    (root / "space.yaml").write_text(SPACE)
    (root / "notes.txt").write_text("hello\n")
    (root / "a.png").write_bytes(b"")


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished run on ok.csv (its test split already evaluated once by fit)."""
    root = tmp_path_factory.mktemp("trained")
    _table().to_csv(root / "train.csv", index=False)
    run = root / "run"
    trainwise.fit(str(root / "train.csv"), target="label", epochs=2, quiet=True, run_dir=run)
    return run


F = ["fit", "--data", "iris", "--epochs", "1", "--quiet"]  # a quick, valid fit the cases spoil one option of
RD = ["--run-dir", "RD"]

# (argv, what the message must name, what the HINT must say). RUN: the trained run; RD/OUT: folders that must not appear.
CLI_CASES = [
    # --- option values (config validation) ---
    (F + ["--lr", "inf"], "lr='inf'", "0.001"),
    (F + ["--lr", "nan"], "lr='nan'", "0.001"),
    (F + ["--lr", "-1"], "must be > 0 and finite, got -1", "3e-4"),
    (F + ["--lr", "fast"], "lr='fast'", "auto"),
    (F + ["--momentum", "2"], "momentum='2'", "< 1"),
    (F + ["--momentum", "-0.5"], "momentum='-0.5'", ">= 0"),
    (F + ["--weight-decay", "inf"], "weight_decay='inf'", "finite number >= 0"),
    (F + ["--l2", "nan"], "l2='nan'", "finite number"),
    (F + ["--dropout", "1"], "dropout='1'", "< 1"),
    (F + ["--epochs", "0"], "epochs='0'", "> 0"),
    (F + ["--batch-size", "0"], "batch_size='0'", "> 0"),
    (F + ["--batch-size", "many"], "batch_size='many'", "whole number"),
    (F + ["--min-delta", "inf"], "min_delta='inf'", "finite number"),
    (F + ["--clip-norm", "inf"], "clip_norm='inf'", "finite number"),
    (F + ["--gamma", "2"], "gamma='2'", "<= 1"),
    (F + ["--seed", "x"], "seed='x'", "whole number"),
    (F + ["--split", "0.5,0.2,0.2"], "sum to 0.9, not 1", "0.7,0.15,0.15"),
    (F + ["--split", "a,b"], "three comma-separated numbers", "0.7,0.15,0.15"),
    (F + ["--split", "1,0,0"], "validation fraction is 0", "--no-early-stopping"),
    (F + ["--optimizer", "adma"], "unknown optimizer 'adma'", "did you mean 'adam'?"),
    (F + ["--schedule", "cosin"], "schedule 'cosin'", "did you mean 'cosine'?"),
    (F + ["--activation", "relux"], "activation 'relux'", "did you mean 'relu'?"),
    (F + ["--target", "species"], "target='species'", "leave --target out"),
    (F + ["--schedule", "step", "--warmup-epochs", "0.5"], "only applies to the cosine schedule", "--schedule cosine"),
    (F + ["--schedule", "cosine", "--warmup-epochs", "5", "--epochs", "3"], "not shorter than the run (epochs=3)", "below 3"),
    (F + ["--augment", "flop"], "augmentation 'flop'", "did you mean 'flip'?"),
    (F + ["--augment", "rotate=500"], "outside [0, 180]", "rotate=10"),
    (F + ["--image-size", "0"], "image_size", "height,width"),
    (F + ["--device", "tpu"], "unknown device 'tpu'", "cpu"),
    (F + ["--lrr", "0.1"], "unknown option(s): --lrr", "did you mean '--lr'?"),
    (F + ["--gradient-clip-val", "1"], "--gradient-clip-val", "did you mean '--clip-norm'?"),
    # --- config files ---
    (["fit", "--config", "nope.yaml"], "config file 'nope.yaml' does not exist", "config.yaml"),
    (["fit", "--config", "empty.yaml"], "config file 'empty.yaml' is empty", "config.yaml"),
    (["fit", "--config", "comments.yaml"], "config file 'comments.yaml' is empty", "config.yaml"),
    (["fit", "--config", "list.yaml"], "'list.yaml' must hold a mapping", "config.yaml"),
    (["fit", "--config", "broken.yaml"], "'broken.yaml' is not valid YAML", "fix the YAML syntax"),
    (["fit", "--config", "bytes.yaml"], "'bytes.yaml' must hold a mapping", "config.yaml"),
    (["fit", "--config", "int_key.yaml"], "has the key 1", "name: value"),
    (["fit", "--config", "alias.yaml"], "key 'learning_rate'", "did you mean 'lr'?"),
    (["fit", "--config", "inf.yaml"], "lr=inf", "0.001"),
    # --- data ---
    (F + ["--data", "digts"], "unknown data set 'digts'", "did you mean 'digits'?"),
    (F + ["--data", "missing.csv", "--target", "y"], "data file 'missing.csv' does not exist", "built-in data set"),
    (F + ["--data", "ok.csv"], "'ok.csv' is a CSV file but no target column", "--target COLUMN"),
    (F + ["--data", "ok.csv", "--target", "labl"], "target column in 'ok.csv' 'labl'", "did you mean 'label'?"),
    (F + ["--data", "inf.csv", "--target", "label"], "column 'a' holds 1 infinite", "finite numbers"),
    (F + ["--data", "huge.csv", "--target", "label"], "column 'b' holds 1 infinite or too large", "finite numbers"),
    (F + ["--data", "abc.csv", "--target", "label"], "column 'a' holds numbers except in 1 row(s): 'abc' (row 6)", "--na-values"),
    (F + ["--data", "dash.csv", "--target", "label"], "'-' (row 8)", "add the marker to --na-values"),
    (F + ["--data", "question.csv", "--target", "label"], "missing values in columns 'a' (1)", "--missing drop"),
    (F + ["--data", "question.csv", "--target", "label", "--na-values", "NA"], "'?' (row 6)", "--na-values"),
    (F + ["--data", "label_text.csv", "--target", "label"], "column 'label' holds numbers except in 1 row(s): 'maybe'", "--na-values"),
    (F + ["--data", "empty_column.csv", "--target", "label", "--missing", "median"], "'a' hold no values at all", "drop those columns"),
    (F + ["--data", "one_class.csv", "--target", "label"], "target 'label' has a single class", "at least two classes"),
    (F + ["--data", "float_label.csv", "--target", "label", "--task", "classification"], "non-integer values", "--task regression"),
    (F + ["--data", "ok.csv", "--target", "label", "--task", "regression"], "holds text values", "--task classification"),
    (F + ["--data", "empty.csv", "--target", "label"], "cannot read 'empty.csv' as CSV", "header row"),
    (F + ["--data", "header_only.csv", "--target", "label"], "'header_only.csv' has a header but no data rows", "rows of data"),
    (F + ["--data", "only_target.csv", "--target", "label"], "no feature columns besides the target 'label'", "add feature columns"),
    (F + ["--data", "objects.npz"], "array 'X' holds Python objects", "numpy.savez"),
    (F + ["--data", "no_arrays.npz"], "'no_arrays.npz' has keys []", "numpy.savez"),
    (F + ["--data", "junk.npz"], "'junk.npz' is not a .npz file", "numpy.savez"),
    (F + ["--data", "mismatch.npz"], "X has 10 rows but y has 9", "one target per row"),
    # --- models ---
    (F + ["--model", "mlp:"], "model spec 'mlp:' has no hidden layer sizes", "linear"),
    (F + ["--model", "mlp:12,x"], "model spec 'mlp:12,x' has a non-integer size", "mlp:128,64"),
    (F + ["--model", "mlp:0"], "model spec 'mlp:0' has a size <= 0", "positive sizes"),
    (F + ["--model", "linear:5"], "model spec 'linear:5'", "write linear"),
    (F + ["--model", "transformer"], "unknown model spec 'transformer'", "mlp:H1,H2"),
    (F + ["--model", "cnn:"], "model spec 'cnn:' has no conv channels", "cnn:32,64"),
    (F + ["--model", "nofile.py:build"], "model file", "path/to/file.py:function"),
    (F + ["--model", "m.py:biuld"], "'biuld'", "did you mean 'build'?"),
    # --- the parts: found before the run directory is created (they used to leave one holding config.yaml) ---
    (F + RD + ["--model", "cnn:8"], "model 'cnn:8' needs images", "an MLP"),
    (F + RD + ["--model", "m.py:build"], "model 'm.py:build' cannot take the data: input rows have shape (4,)", "(batch, 4)"),
    (F + RD + ["--model", "m.py:bad"], "model function", "return an nn.Module"),
    (F + RD + ["--model", "m.py:wrong_out"], "returns outputs of shape (2, 4)", "3 output(s)"),
    (F + RD + ["--model", "m.py:number"], "returned int, not a torch.nn.Module", "return an nn.Module"),
    (F + RD + ["--augment", "flip"], "augment='flip' needs image data", "drop --augment"),
    (F + RD + ["--batch-size", "500"], "batch_size=500 is larger than the training split (106 rows)", "--batch-size 32 or less"),
    (F + RD + ["--batch-size", "107"], "batch_size=107 is larger than the training split (106 rows)", "--batch-size"),
    (F + ["--batch-size", "500"], "batch_size=500", "--batch-size"),  # the default runs/ folder is not created either
    (F + RD + ["--monitor", "val/acc"], "monitor 'val/acc' is not a metric this run logs", "did you mean 'val/accuracy'?"),
    (F + RD + ["--monitor", "train/r2"], "monitor 'train/r2'", "did you mean"),
    (F + RD + ["--monitor", "train/grad_norm"], "monitor 'train/grad_norm'", "train/loss"),
    (F + RD + ["--schedule", "plateau", "--monitor", "val/r2"], "monitor 'val/r2'", "did you mean"),
    (F + RD + ["--restarts", "2", "--monitor", "val/acc"], "monitor 'val/acc'", "val/accuracy"),
    (F + RD + ["--restarts", "2", "--batch-size", "500"], "batch_size=500", "--batch-size"),
    (F + RD + ["--loss", "mse"], "loss 'mse' is for regression but the task is classification", "--task regression"),
    (F + RD + ["--loss", "bce_with_logits"], "needs exactly 2 classes, the data has 3", "--loss cross_entropy"),
    (F + RD + ["--data", "diabetes", "--loss", "cross_entropy"], "is for classification but the task is regression", "--loss mse"),
    (F + RD + ["--init-from", "nowhere"], "init_from='nowhere': no such run folder", "safetensors"),
    (F + RD + ["--init-from", "ok.csv"], "init_from='ok.csv': cannot read", "safetensors"),
    (F + RD + ["--freeze", "zz"], "freeze: no parameter name starts with 'zz'", "1.weight"),
    (F + RD + ["--train-last", "9"], "train_last=9 but the model has only 3 layers", "--train-last 3 or less"),
    (F + RD + ["--device", "cpu", "--precision", "fp16"], "precision 'fp16' needs a CUDA device", "--precision bf16"),
    # --- the run directory itself ---
    (F + ["--run-dir", "ok.csv"], "--run-dir 'ok.csv' is a file, not a folder", "give --run-dir a folder path"),
    (F + ["--run-dir", "ok.csv/sub"], "'ok.csv' on its path is a file", "whose parents are folders"),
    (F + ["--run-dir", "RUN"], "already holds a run", "new --run-dir"),
    # --- other subcommands ---
    (["tune", "--space", "nope.yaml"], "search space 'nope.yaml' does not exist", "YAML file"),
    (["tune", "--space", "empty.yaml"], "search space 'empty.yaml' is empty", "YAML file"),
    (["tune", "--space", "space.yaml", "--trials", "0", "--out", "OUT"], "trials must be a whole number >= 1", "--trials 20"),
    (["tune", "--space", "space.yaml", "--monitor", "val/acc", "--out", "OUT"], "monitor 'val/acc'", "val/accuracy"),
    (["tune", "--space", "space.yaml", "--batch-size", "500", "--out", "OUT"], "batch_size=500", "--batch-size"),
    (["tune", "--space", "space.yaml", "--out", "ok.csv"], "--run-dir 'ok.csv' is a file", "folder path"),
    (["tune", "--space", "space.yaml", "--storage", "sqlite:///x.db"], "--storage needs --study-name", "--study-name"),
    (["cv", "--data", "iris", "--folds", "1", "--run-dir", "RD"], "at least 2 folds", "--folds 5"),
    (["cv", "--data", "iris", "--monitor", "val/acc", "--run-dir", "RD"], "monitor 'val/acc'", "val/accuracy"),
    (["cv", "--data", "iris", "--augment", "flip", "--run-dir", "RD"], "needs image data", "drop --augment"),
    (["lr-find", "--data", "iris", "--batch-size", "500", "--out", "OUT"], "batch_size=500", "--batch-size"),
    (["lr-find", "--data", "iris", "--out", "ok.csv"], "--run-dir 'ok.csv' is a file", "folder path"),
    (["sanity", "--data", "iris", "--batches", "0"], "batches >= 1", "--batches 2"),
    (["auto", "--data", "iris", "--budget-minutes", "0", "--out", "OUT"], "budget_minutes must be > 0", "--budget-minutes 5"),
    (["auto", "--data", "iris", "--monitor", "val/acc", "--run-dir", "OUT"], "monitor 'val/acc'", "val/accuracy"),
    (["summary", "--data", "iris", "--model", "mlp:"], "no hidden layer sizes", "linear"),
    (["evaluate", "not_a_run"], "'not_a_run' is not a finished trainwise run", "the run directory"),
    (["evaluate", "RUN"], "already evaluated 1 time(s)", "--force-test"),
    (["evaluate", "RUN", "--data", "inf.csv"], "column 'a' holds 1 infinite", "finite numbers"),
    (["evaluate", "RUN", "--data", "abc.csv"], "'abc' (row 6)", "--na-values"),
    (["predict", "RUN", "ok.csv", "--output", "RUN"], "--output", "file name"),
    (["predict", "RUN", "ok.csv", "--output", "nodir/p.csv"], "the folder 'nodir' does not exist", "mkdir -p nodir"),
    (["predict", "RUN", "text_in_numbers.csv", "--output", "p.csv"], "input column 'a' was numeric in training but holds text in 60 row(s)",
     "give numbers in 'a'"),
    (["predict", "RUN", "abc.csv", "--output", "p.csv"], "'abc' (row 6)", "--na-values"),
    (["predict", "RUN", "inf.csv", "--output", "p.csv"], "column 'a' holds 1 infinite", "finite numbers"),
    (["predict", "RUN", "no_b.csv", "--output", "p.csv"], "input is missing feature columns: b", "a, b, color"),
    (["predict", "RUN", "objects.npz", "--output", "p.csv"], "array 'X' holds Python objects", "numpy.savez"),
    (["predict", "RUN", "junk.npz", "--output", "p.csv"], "'junk.npz' is not a .npz file", "numpy.savez"),
    (["predict", "RUN", "nope.csv", "--output", "p.csv"], "input file 'nope.csv' does not exist", ".csv or .npz"),
    (["predict", "RUN", "notes.txt", "--output", "p.csv"], "unsupported file type '.txt'", ".csv or .npz file"),
    (["predict", "RUN", "a.png", "ok.csv", "--output", "p.csv"], "cannot mix image files and other inputs: ok.csv", "only image files"),
    (["fit", "--resume", "RUN", "--lr", "0.1"], "cannot change lr", "only --epochs and --quiet"),
    (["fit", "--resume", "nothere"], "'nothere' is not a trainwise run directory", "the run directory"),
    (["fit", "--resume", "RUN", "--config", "ok.csv"], "--resume and --config cannot be combined", "config.yaml"),
]


def _id(i: int, argv: list[str]) -> str:
    return f"{i}-" + " ".join(argv[len(F):] if argv[:len(F)] == F else argv)[:60]


@pytest.mark.parametrize("argv, names, fix", CLI_CASES, ids=[_id(i, c[0]) for i, c in enumerate(CLI_CASES)])
def test_cli_refuses_bad_input_and_leaves_nothing(argv, names, fix, inputs, trained, capsys):
    before = {p.name for p in inputs.iterdir()}
    argv = [str(trained) if a == "RUN" else a for a in argv]
    code = main(argv)
    err = capsys.readouterr().err
    message, _, hint = err.partition("HINT:")
    assert code == 2, err
    assert names in message and fix in hint, err
    assert "Traceback" not in err and "internal error" not in err
    assert {p.name for p in inputs.iterdir()} == before  # no runs/, no RD/ or OUT/, no p.csv, no x.db
    assert not (trained / "predictions.csv").exists()


def test_the_run_dir_of_a_place_that_cannot_be_written_is_refused_first(inputs, capsys):
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc (a folder nobody can create files in)")
    code = main(F + ["--run-dir", "/proc/trainwise-run"])
    err = capsys.readouterr().err
    assert code == 2 and "--run-dir '/proc/trainwise-run' cannot be written" in err and "place you can write to" in err
    assert not Path("/proc/trainwise-run").exists() and not (inputs / "runs").exists()


def test_resume_with_another_models_checkpoint_names_the_file(inputs, capsys):
    assert main(F + ["--model", "mlp:8", "--run-dir", "a"]) == 0
    assert main(F + ["--model", "mlp:16", "--run-dir", "b", "--no-early-stopping", "--schedule", "none"]) == 0
    (inputs / "b" / "summary.json").unlink()  # as if b had been killed
    (inputs / "b" / "checkpoints" / "last.safetensors").write_bytes((inputs / "a" / "checkpoints" / "last.safetensors").read_bytes())
    capsys.readouterr()
    assert main(["fit", "--resume", "b", "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "b/checkpoints/last.safetensors' is not a valid trainwise file: tensor '1.weight' has shape (8, 4)" in err
    assert "HINT: the file does not belong to this run" in err


def test_a_category_never_seen_in_training_is_all_zeros_with_a_warning(inputs, trained, capsys):
    new = _table().drop(columns="label")
    new.loc[:2, "color"] = "purple"
    new.loc[3, "color"] = "pink"
    new.to_csv("new.csv", index=False)
    assert main(["predict", str(trained), "new.csv", "--output", "p.csv"]) == 0
    err = capsys.readouterr().err
    assert ("trainwise predict: warning: 'new.csv': column 'color' has 4 row(s) with categories never seen in training: "
            "'purple' (3), 'pink' (1); they are encoded as all zeros") in err
    with pytest.warns(UserWarning, match="column 'color' has 4 row"):
        frame = trainwise.predict(trained, "new.csv")
    assert len(frame) == 60 and frame["prediction"].isin(["yes", "no"]).all()


def test_na_values_are_configurable_and_reach_predict(inputs, capsys):
    code = main(F + ["--data", "dash.csv", "--target", "label", "--na-values", "-", "--missing", "median", "--run-dir", "r"])
    assert code == 0, capsys.readouterr().err
    assert "na_values: '-'" in (inputs / "r" / "config.yaml").read_text()
    assert main(["predict", "r", "dash.csv", "--output", "p.csv"]) == 0  # '-' is missing there too: filled with the median
    assert RunConfig(na_values=["?", "-", None]).na_values == "?,-,"


def test_tune_with_a_seed_from_the_command_line(inputs, capsys):
    code = main(["tune", "--space", "space.yaml", "--seed", "3", "--trials", "1", "--out", "t", "--no-retrain"])
    assert code == 0, capsys.readouterr().err
    assert "seed: 3" in (inputs / "t" / "best_config.yaml").read_text()


@pytest.mark.parametrize("argv", [["backprop"], ["predict", "RUN", "ok.csv", "--output", "p.csv"]], ids=["backprop", "predict"])
def test_output_into_a_closed_pipe_is_no_internal_error(argv, inputs, trained):
    argv = [str(trained) if a == "RUN" else a for a in argv]
    proc = subprocess.Popen([sys.executable, "-m", "trainwise.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proc.stdout.close()  # the reader went away before the first line, as `| head -0` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) != 1, err
    assert "internal error" not in err and "Traceback" not in err and "BrokenPipe" not in err


def test_a_fit_whose_reader_went_away_trains_on_and_writes_the_whole_run(inputs):
    # `trainwise fit ... | head -0`: rich would end the program with exit 1 at its first print; the run
    # must go on silently, be written in full and exit 0
    proc = subprocess.Popen([sys.executable, "-m", "trainwise", "fit", "--data", "iris", "--epochs", "3", "--run-dir", "piped"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    summary = json.loads((inputs / "piped" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_run"] == 3
    assert (inputs / "piped" / "model.safetensors").is_file()


X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
Y = np.arange(50) % 2


def _space():
    return {"lr": {"type": "uniform", "low": 0.001, "high": 0.01}}


# (call, exception type, what the message must name, what the HINT must say)
API_CASES = [
    (lambda: trainwise.fit(X, quiet=True), TrainwiseError, "features X were given without targets y", "fit(X, y)"),
    (lambda: trainwise.fit(X, np.stack([Y, Y + 2], 1), quiet=True), TrainwiseError, "y has shape (50, 2)", "1-D"),
    (lambda: trainwise.fit(X, Y[:-1], quiet=True), TrainwiseError, "X has 50 rows but y has 49", "one target per row"),
    (lambda: trainwise.fit(X, Y, batch_size=0, quiet=True), TrainwiseError, "batch_size=0", "> 0"),
    (lambda: trainwise.fit(X, Y, lr=float("inf"), quiet=True), TrainwiseError, "lr=inf", "0.001"),
    (lambda: trainwise.fit(X, Y, momentum=2, quiet=True), TrainwiseError, "momentum=2", "< 1"),
    (lambda: trainwise.fit(3, Y, quiet=True), TrainwiseError, "X is a single value", "rows of features"),
    (lambda: trainwise.fit([[1, 2], [3]], [0, 1], quiet=True), TrainwiseError, "X is not an array", "equal-length rows"),
    (lambda: trainwise.fit(X, np.full(50, np.nan), quiet=True), TrainwiseError, "50 values of y are NaN", "finite targets"),
    (lambda: trainwise.fit(np.zeros((0, 3)), np.zeros(0), quiet=True), TrainwiseError, "X has shape (0, 3): no rows", "a few rows"),
    (lambda: trainwise.fit(np.full((50, 3), 1e39), Y, quiet=True), TrainwiseError, "too large", "clean the array"),
    (lambda: trainwise.fit(X.astype(str), Y, quiet=True), TrainwiseError, "X has non-numeric dtype", "encode features as numbers"),
    (lambda: trainwise.fit(X, Y, model=5, quiet=True), TrainwiseError, "model=5", "mlp:128,64"),
    (lambda: trainwise.fit(X, Y, learning_rate=0.1, quiet=True), TrainwiseError, "key 'learning_rate'", "did you mean 'lr'?"),
    (lambda: trainwise.fit(X, Y, target="a", quiet=True), TrainwiseError, "target='a'", "leave --target out"),
    (lambda: trainwise.fit(X, Y, model=nn.Linear(3, 2), restarts=2, quiet=True), TrainwiseError, "one nn.Module instance", "spec string"),
    (lambda: trainwise.fit(X, Y, model=nn.Linear(5, 2), quiet=True, run_dir="RD"), TrainwiseError, "cannot take the data", "(batch, 3)"),
    (lambda: trainwise.fit(X, Y, monitor="val/f2", quiet=True, run_dir="RD"), TrainwiseError, "monitor 'val/f2'", "val/"),
    (lambda: trainwise.fit("iris", run_dir="ok.csv", quiet=True), TrainwiseError, "--run-dir 'ok.csv' is a file", "folder path"),
    (lambda: trainwise.fit("iris", model="mlp:", quiet=True), TrainwiseError, "no hidden layer sizes", "linear"),
    (lambda: TensorBatches(torch.zeros(5, 2), torch.zeros(4), batch_size=2), TrainwiseError, "X has 5 rows but y has 4", "one target"),
    (lambda: TensorBatches(torch.zeros(5, 2), torch.zeros(5), batch_size=0), TrainwiseError, "batch_size=0", "batch_size=64"),
    (lambda: TensorBatches(torch.zeros(5, 2), torch.zeros(5), batch_size=2.5), TrainwiseError, "batch_size=2.5", "batch_size=64"),
    (lambda: TensorBatches(np.zeros((5, 2)), torch.zeros(5), batch_size=2), TrainwiseError, "X must be a tensor", "torch.as_tensor"),
    (lambda: trainwise.Trainer(nn.Linear(2, 2), accumulate=0), TrainwiseError, "accumulate=0", "accumulate=1"),
    (lambda: RunConfig.build({"warmup_epochs": 300, "schedule": "cosine"}), TrainwiseError, "warmup_epochs", "below 200"),
    (lambda: RunConfig.build({1: 2}), TrainwiseError, "has the key 1", "name: value"),
    (lambda: RunConfig.build({"data": "a\x00b.csv"}), TrainwiseError, "NUL", "as it is on disk"),
    (lambda: load_config("empty.yaml"), TrainwiseError, "config file 'empty.yaml' is empty", "config.yaml"),
    (lambda: tune(_space(), data="iris", trials=0, out="OUT"), TrainwiseError, "trials must be a whole number >= 1", "--trials"),
    (lambda: tune(_space(), data="iris", epochs=1, monitor="val/acc", out="OUT"), TrainwiseError, "monitor 'val/acc'", "val/accuracy"),
    (lambda: cross_validate("iris", folds=1, run_dir="RD"), TrainwiseError, "at least 2 folds", "--folds 5"),
    (lambda: sanity("iris", batches=0), TrainwiseError, "batches >= 1", "--batches 2"),
    (lambda: trainwise.evaluate("not_a_run"), TrainwiseError, "'not_a_run' is not a finished trainwise run", "run directory"),
]


@pytest.mark.parametrize("call, error, names, fix", API_CASES, ids=[f"api-{i}" for i in range(len(API_CASES))])
def test_api_refuses_bad_input_and_leaves_nothing(call, error, names, fix, inputs):
    before = {p.name for p in inputs.iterdir()}
    with pytest.raises(error) as info:
        call()
    message = info.value.message if isinstance(info.value, TrainwiseError) else str(info.value)
    hint = info.value.hint if isinstance(info.value, TrainwiseError) else ""
    assert names in message and fix in (hint or ""), str(info.value)
    assert {p.name for p in inputs.iterdir()} == before


def test_predict_output_that_is_a_folder_is_refused_before_reading_anything(inputs, trained):
    with pytest.raises(TrainwiseError, match="--output '.*' is a folder, not a file"):
        trainwise.predict(trained, "ok.csv", inputs)


def test_the_table_is_big_enough():
    assert len(CLI_CASES) + len(API_CASES) >= 80
