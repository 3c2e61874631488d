import json
import subprocess
import sys

import pandas as pd
import pytest


def test_fit_end_to_end_on_csv_then_evaluate_and_predict(cli, small_csv, tmp_path):
    run = tmp_path / "run"
    code, out, err = cli("fit", "--data", str(small_csv), "--target", "label", "--epochs", "15", "--run-dir", str(run))
    assert code == 0, err
    assert "epoch" in out and "val/accuracy" in out and f"run: {run}" in out  # the live table and the final line
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data"]["class_names"] == ["no", "yes"]
    assert json.loads((run / "preprocess.json").read_text())["target"]["classes"] == ["no", "yes"]

    code, out, err = cli("evaluate", str(run))  # the test split is sealed: fit already looked once
    assert code == 2 and "already evaluated 1 time(s)" in err and "--force-test" in err
    code, out, _ = cli("evaluate", str(run), "--force-test")
    assert code == 0 and f"test/accuracy: {summary['test']['test/accuracy']:.6g}" in out
    assert json.loads((run / "summary.json").read_text())["test_evaluations"] == 2

    code, out, _ = cli("predict", str(run), str(small_csv), "--output", str(tmp_path / "pred.csv"))
    assert code == 0 and "120 predictions written" in out
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert len(pred) == 120 and set(pred["prediction"]) <= {"no", "yes"}


def test_config_reproduces_run_with_overrides(cli, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert cli("fit", "--data", "iris", "--epochs", "6", "--lr", "0.01", "--quiet", "--run-dir", str(a))[0] == 0
    assert cli("fit", "--config", str(a / "config.yaml"), "--run-dir", str(b))[0] == 0
    strip = lambda p: [",".join(line.split(",")[:-1]) for line in (p / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert strip(a) == strip(b) and len(strip(a)) == 7
    assert cli("fit", "--config", str(a / "config.yaml"), "--epochs", "3", "--run-dir", str(c))[0] == 0
    assert json.loads((c / "summary.json").read_text())["epochs_run"] == 3


@pytest.mark.parametrize("argv,message", [
    (["fit", "--lrr", "0.1"], "unknown option(s): --lrr 0.1. HINT: did you mean '--lr'?"),
    (["fti"], "invalid choice: 'fti'"),
    (["fit", "--optimizer", "adma"], "unknown optimizer 'adma'; valid: sgd, adam, adamw, rmsprop. HINT: did you mean 'adam'?"),
    (["fit", "--loss", "crossentropy"], "HINT: did you mean 'cross_entropy'?"),
    (["fit", "--data", "digts"], "unknown data set 'digts'; valid: digits, breast-cancer"),
    (["fit", "--data", "missing.csv", "--target", "y"], "data file 'missing.csv' does not exist"),
    (["fit", "--split", "0.5,0.2,0.2"], "sum to 0.9, not 1"),
    (["fit", "--data", "iris", "--batch-size", "500"], "batch_size=500 is larger than the training split (106 rows)"),
    (["fit", "--model", "mlp:12,x"], "model spec 'mlp:12,x' has a non-integer size"),
    (["fit", "--model", "transformer"], "unknown model spec 'transformer'"),
    (["fit", "--config", "nope.yaml"], "config file 'nope.yaml' does not exist"),
    (["evaluate", "not_a_run"], "'not_a_run' is not a finished trainwise run"),
])
def test_bad_input_exits_2_with_message(cli, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(*argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and "HINT:" in err


def test_bad_config_key_and_target(cli, tmp_path, small_csv):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: iris\nlearning_rate: 0.1\n")
    code, _, err = cli("fit", "--config", str(cfg))
    assert code == 2 and "unknown config file" in err and "key 'learning_rate'" in err and "did you mean 'lr'?" in err
    code, _, err = cli("fit", "--data", str(small_csv), "--target", "labl")
    assert code == 2 and "unknown target column" in err and "did you mean 'label'?" in err


def test_shape_mismatch_from_user_model_file(cli, tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import torch\ndef build(input_shape, output_size):\n    return torch.nn.Linear(5, output_size)\n")
    code, _, err = cli("fit", "--data", "iris", "--model", f"{f}:build", "--run-dir", str(tmp_path / "r"))
    assert code == 2 and "cannot take the data: input rows have shape (4,)" in err and "mat1 and mat2" in err
    code, _, err = cli("fit", "--data", "iris", "--model", f"{f}:biuld", "--run-dir", str(tmp_path / "r2"))
    assert code == 2 and "did you mean 'build'?" in err


def test_predict_bad_columns(cli, tmp_path, small_csv):
    run = tmp_path / "run"
    assert cli("fit", "--data", str(small_csv), "--target", "label", "--epochs", "2", "--quiet", "--run-dir", str(run))[0] == 0
    pd.DataFrame({"a": [1.0], "color": ["red"]}).to_csv(tmp_path / "x.csv", index=False)
    code, _, err = cli("predict", str(run), str(tmp_path / "x.csv"))
    assert code == 2 and "input is missing feature columns: b" in err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "trainwise.cli", "fit", "--help"], capture_output=True, text=True, check=True)
    assert "--batch-size" in out.stdout and "--no-early-stopping" in out.stdout and "--config" in out.stdout


def test_run_dir_is_never_overwritten(cli, tmp_path):
    run = tmp_path / "r"
    assert cli("fit", "--data", "iris", "--epochs", "2", "--quiet", "--run-dir", str(run))[0] == 0
    code, _, err = cli("fit", "--data", "iris", "--epochs", "2", "--quiet", "--run-dir", str(run))
    assert code == 2 and "already holds a run" in err


def test_regularization_and_optimization_flags_reach_the_run(tmp_path, cli):
    import pandas as pd
    import yaml

    run = tmp_path / "flags"
    code, out, err = cli("fit", "--data", "iris", "--epochs", "4", "--quiet", "--run-dir", str(run), "--l1", "1e-3",
                         "--l2", "1e-3", "--penalize", "all", "--schedule", "step", "--step-size", "2", "--gamma", "0.1",
                         "--clip-norm", "2", "--accumulate", "2", "--precision", "bf16", "--init", "xavier",
                         "--no-checkpoint", "--no-early-stopping")
    assert code == 0, err
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert (cfg["l1"], cfg["l2"], cfg["penalize"], cfg["schedule"], cfg["step_size"], cfg["gamma"]) == (1e-3, 1e-3, "all", "step", 2, 0.1)
    assert (cfg["clip_norm"], cfg["accumulate"], cfg["precision"], cfg["init"], cfg["checkpoint"]) == (2.0, 2, "bf16", "xavier", False)
    frame = pd.read_csv(run / "metrics.csv")
    assert frame["lr"].tolist() == pytest.approx([3e-3, 3e-3, 3e-4, 3e-4])
    assert {"train/penalty", "train/grad_norm"} <= set(frame.columns) and not (run / "checkpoints").exists()


@pytest.mark.parametrize("argv, message", [
    (["--schedule", "cosin"], "schedule 'cosin'.*did you mean 'cosine'"),
    (["--precision", "16"], "precision '16'.*32, bf16, fp16"),
    (["--clip-norm", "-1"], "clip_norm='-1'"),
    (["--accumulate", "0"], "accumulate='0'"),
    (["--gradient-clip-val", "1"], "did you mean '--clip-norm'"),
])
def test_bad_optimization_flags(cli, argv, message):
    import re

    code, _, err = cli("fit", "--data", "iris", *argv)
    assert code == 2 and re.search(message, err), err


def test_version_names_trainwise_and_torch(cli):
    from importlib.metadata import version

    import torch

    code, out, err = cli("--version")
    assert code == 0
    assert (out + err).strip() == f"trainwise {version('trainwise')}, torch {torch.__version__}"


@pytest.mark.parametrize("argv", [["--help"], ["fit", "--help"], ["tune", "--help"], ["--version"]])
def test_help_and_version_start_without_importing_torch(argv):
    import subprocess
    import sys

    code = ("import sys\nfrom trainwise.cli import main\ncode = main(sys.argv[1:])\n"
            "print('torch' in sys.modules, 'pandas' in sys.modules, code)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False False 0", out.stderr


def _run_exit(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_command_exits_fast_but_runs_atexit_functions_and_flushes_output():
    """`run` skips the interpreter's teardown (os._exit) after flushing and running the atexit functions."""
    p = _run_exit("import atexit, sys\natexit.register(print, 'atexit ran')\nsys.argv = ['trainwise', '--version']\n"
                  "print('unflushed', end='')\nfrom trainwise.cli import run\nrun()")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("unflushed") and "trainwise" in p.stdout and p.stdout.rstrip().endswith("atexit ran")
    bad = _run_exit("import sys\nsys.argv = ['trainwise', 'fit', '--data', 'nope']\nfrom trainwise.cli import run\nrun()")
    assert bad.returncode == 2 and "data set 'nope'" in bad.stderr


def test_the_command_waits_for_a_running_non_daemon_thread_before_exiting():
    p = _run_exit("import sys, threading, time\n"
                  "threading.Thread(target=lambda: (time.sleep(0.5), print('thread finished', flush=True))).start()\n"
                  "sys.argv = ['trainwise', '--version']\nfrom trainwise.cli import run\nrun()")
    assert p.returncode == 0 and "thread finished" in p.stdout


def test_every_command_that_writes_a_folder_lists_one_name_for_it():
    from trainwise.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ("fit", "cv", "lr-find", "tune", "auto"):
        help_ = commands[name].format_help()
        assert "--run-dir" in help_ and "--out" not in help_.replace("--output", ""), name  # (--out still works: test_bad_input)
    for name in ("predict", "export", "compare"):  # one file: --output
        assert "--output" in commands[name].format_help() and "--run-dir" not in commands[name].format_help(), name
