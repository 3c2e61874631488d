"""A run directory is data only: loading one never imports or runs code unless the user asks (--trust-code),
and then only the file recorded at fit time with its SHA-256; tampered or mismatched files are clear errors
naming the file, never an internal error or a silently wrong run."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import trainwise
from trainwise import TrainwiseError
from trainwise.report.html import write_report
from trainwise.runs import load_checkpoint, read_safetensors, save_checkpoint

MODEL_CODE = ("import torch\ndef build(input_shape, output_size):\n"
              "    return torch.nn.Sequential(torch.nn.Linear(input_shape[0], 8), torch.nn.ReLU(), torch.nn.Linear(8, output_size))\n")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A finished built-in run (iris MLP) and a .npz of feature rows to predict."""
    root = tmp_path_factory.mktemp("base")
    trainwise.fit("iris", run_dir=root / "run", epochs=3, quiet=True, model="mlp:8")
    np.savez(root / "x.npz", X=trainwise.load_source("iris").X[:5])
    return root


@pytest.fixture
def run(base_run, tmp_path):
    """A fresh copy of the built-in run to tamper with."""
    shutil.copytree(base_run / "run", tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def rows(base_run):
    return str(base_run / "x.npz")


def _commands(run_dir: Path, rows: str) -> dict[str, list[str]]:
    return {"predict": ["predict", str(run_dir), rows, "--output", str(run_dir.parent / "p.csv")],
            "evaluate": ["evaluate", str(run_dir)], "report": ["report", str(run_dir)]}


# --- 1. code named in a run directory does not run ------------------------------------------------------

def _evil_file(run_dir: Path, marker: Path) -> Path:
    evil = run_dir / "evil.py"
    evil.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('pwned')\n" + MODEL_CODE)
    return evil


@pytest.mark.parametrize("command", ["predict", "evaluate", "report"])
def test_tampered_subprocess_target_never_runs(run, rows, cli, command):
    """The old layout, {"builder": "import", "target": "subprocess:call"}, would have run `touch MARKER`."""
    marker = run.parent / "marker"
    (run / "model.json").write_text(json.dumps({"builder": "import", "target": "subprocess:call",
                                                "input_shape": ["touch", str(marker)], "output_size": 3}))
    for argv in ([*_commands(run, rows)[command]], [*_commands(run, rows)[command], "--trust-code"]):
        code, out, err = cli(*argv)
        assert code == 2, err
        assert "model.json' is not a valid trainwise file" in err and "internal error" not in err
        assert not marker.exists()


@pytest.mark.parametrize("command", ["predict", "evaluate", "report"])
def test_user_code_in_a_run_dir_needs_trust_code(run, rows, cli, command):
    marker = run.parent / "marker"
    evil = _evil_file(run, marker)
    (run / "model.json").write_text(json.dumps({"builder": "import", "target": f"{evil}:build", "file": str(evil),
                                                "sha256": _sha(evil), "input_shape": [4], "output_size": 3}))
    code, out, err = cli(*_commands(run, rows)[command])
    assert code == 2
    assert f"user code: it is built by calling '{evil}:build' from '{evil}'" in err
    assert "--trust-code" in err and "only for runs from a trusted source" in err
    assert not marker.exists()


@pytest.mark.parametrize("target", ["os:system", "subprocess:call", "evilmod:build"])
def test_api_refuses_user_code_without_trust(run, rows, monkeypatch, target):
    """Module targets too: a module next to the run (or anywhere on sys.path) is not imported."""
    marker = run.parent / "marker"
    evil = run.parent / "evilmod.py"
    evil.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('pwned')\n" + MODEL_CODE)
    monkeypatch.syspath_prepend(str(run.parent))
    monkeypatch.chdir(run.parent)
    file = evil if target.startswith("evilmod") else Path(__import__(target.split(":")[0]).__file__)
    (run / "model.json").write_text(json.dumps({"builder": "import", "target": target, "file": str(file),
                                                "sha256": _sha(file), "input_shape": [4], "output_size": 3}))
    calls = [lambda: trainwise.load_run(run), lambda: trainwise.predict(run, rows), lambda: trainwise.evaluate(run),
             lambda: write_report(run), lambda: trainwise.fit("iris", model="mlp:8", init_from=str(run), epochs=1, quiet=True)]
    for call in calls[:4]:
        with pytest.raises(TrainwiseError, match=r"model.json' says this run's model is user code.*HINT: pass --trust-code"):
            call()
    assert calls[4]().summary["transfer"]["loaded"] == 4  # init_from reads weights only: model.json is not looked at
    assert not marker.exists() and "evilmod" not in sys.modules


def test_unknown_builder_and_python_module_runs_are_clear_errors(run, rows, cli):
    (run / "model.json").write_text(json.dumps({"builder": "pickle", "data": "gASV..."}))
    code, _, err = cli("predict", str(run), rows)
    assert code == 2 and ("model.json' has an unknown model builder 'pickle' "
                          "(trainwise writes mlp, cnn, resmlp, resnet, tabular, ensemble, import)") in err
    (run / "model.json").write_text(json.dumps({"builder": "python", "class": "MyNet"}))
    code, _, err = cli("predict", str(run), rows)
    assert code == 2 and "was an nn.Module object passed to fit(model=...) (class MyNet)" in err


@pytest.fixture
def user_run(tmp_path, blobs, monkeypatch):
    """A run whose model is user code in nets/mymodel.py, given relative to the current directory."""
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "mymodel.py").write_text(MODEL_CODE)
    monkeypatch.chdir(tmp_path)
    X, y = blobs
    np.savez(tmp_path / "blobs.npz", X=X, y=y)
    np.savez(tmp_path / "x.npz", X=X[:7])
    trainwise.fit("blobs.npz", model="nets/mymodel.py:build", quiet=True, run_dir=tmp_path / "r", epochs=3)
    return tmp_path / "r"


def test_user_code_run_records_absolute_file_and_hash(user_run):
    recipe = json.loads((user_run / "model.json").read_text())
    file = (user_run.parent / "nets" / "mymodel.py").resolve()
    assert recipe == {"builder": "import", "target": f"{file}:build", "file": str(file), "sha256": _sha(file),
                      "input_shape": [4], "output_size": 3}
    assert trainwise.load_config(user_run / "config.yaml").model == f"{file}:build"  # absolute: a moved run still finds it


def test_trust_code_loads_the_recorded_file_from_any_cwd(user_run, cli, monkeypatch, tmp_path):
    rows = str(user_run.parent / "x.npz")
    code, _, err = cli("predict", str(user_run), rows)
    assert code == 2 and f"from '{user_run.parent / 'nets' / 'mymodel.py'}'" in err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the recorded path is absolute: the current directory does not matter
    code, out, err = cli("predict", str(user_run), rows, "--trust-code", "--output", "p.csv")
    assert code == 0, err
    assert "7 predictions written" in out
    code, out, err = cli("evaluate", str(user_run), "--data", str(user_run.parent / "blobs.npz"), "--trust-code")
    assert code == 0 and "eval/accuracy" in out, err
    code, out, err = cli("report", str(user_run), "--trust-code")
    assert code == 0 and (user_run / "report.html").is_file(), err
    assert trainwise.load_run(user_run, trust_code=True).model[0].in_features == 4


def test_changed_or_missing_user_file_is_refused_even_with_trust(user_run, cli):
    file = user_run.parent / "nets" / "mymodel.py"
    expected = _sha(file)
    marker = user_run.parent / "marker"
    file.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('pwned')\n" + MODEL_CODE)
    for argv in (["predict", str(user_run), str(user_run.parent / "x.npz")], ["evaluate", str(user_run)], ["report", str(user_run)]):
        code, _, err = cli(*argv, "--trust-code")
        assert code == 2
        assert f"the user model file '{file}' changed since the run was trained: its SHA-256 is now {_sha(file)[:12]}..." in err
        assert f"records {expected[:12]}..." in err and "HINT: restore the file" in err
    assert not marker.exists()
    file.unlink()
    code, _, err = cli("predict", str(user_run), str(user_run.parent / "x.npz"), "--trust-code")
    assert code == 2 and f"the user model file '{file}' recorded in" in err and "does not exist" in err


def test_package_module_model_records_its_file(tmp_path, monkeypatch, blobs):
    (tmp_path / "secpkg").mkdir()
    (tmp_path / "secpkg" / "__init__.py").write_text("")
    (tmp_path / "secpkg" / "nets.py").write_text("import torch\ndef tiny(input_shape, output_size):\n"
                                              "    return torch.nn.Linear(input_shape[0], output_size)\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # a package name of its own: sys.modules outlives the test
    X, y = blobs
    r = trainwise.fit(X, y, model="secpkg.nets:tiny", quiet=True, run_dir=tmp_path / "r", epochs=2)
    file = tmp_path / "secpkg" / "nets.py"
    assert r.summary["model"]["recipe"] == {"builder": "import", "target": "secpkg.nets:tiny", "file": str(file.resolve()),
                                            "sha256": _sha(file), "input_shape": [4], "output_size": 3}
    with pytest.raises(TrainwiseError, match="says this run's model is user code"):
        trainwise.load_run(r.run_dir)
    assert trainwise.load_run(r.run_dir, trust_code=True).model.in_features == 4
    file.write_text(file.read_text() + "# changed\n")
    with pytest.raises(TrainwiseError, match=r"secpkg/nets.py' changed since the run was trained"):
        trainwise.load_run(r.run_dir, trust_code=True)


def test_moved_run_dir_loads_built_in_models_from_any_cwd(base_run, tmp_path, cli, monkeypatch):
    moved = tmp_path / "somewhere" / "else"
    shutil.copytree(base_run / "run", moved)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    code, out, err = cli("predict", str(moved), str(base_run / "x.npz"), "--output", "p.csv")
    assert code == 0 and "5 predictions written" in out, err
    code, out, err = cli("evaluate", str(moved), "--force-test")
    assert code == 0 and "test/accuracy" in out, err
    code, out, err = cli("report", str(moved))
    assert code == 0, err


def test_config_yaml_records_absolute_paths_so_resume_works_from_any_cwd(tmp_path, cli, monkeypatch):
    """A run made from relative paths (data file, model file) resumes and predicts from another directory."""
    work = tmp_path / "work"
    (work / "nets").mkdir(parents=True)
    (work / "nets" / "small.py").write_text(MODEL_CODE)
    x = trainwise.load_source("iris")
    np.savez(work / "iris.npz", X=x.X, y=x.y)
    monkeypatch.chdir(work)
    code, out, err = cli("fit", "--data", "iris.npz", "--model", "nets/small.py:build", "--epochs", "4",
                         "--run-dir", "run", "--quiet", "--schedule", "none")
    assert code == 0, err
    saved = (work / "run" / "config.yaml").read_text()
    assert f"data: {work / 'iris.npz'}" in saved and f"model: {work / 'nets' / 'small.py'}:build" in saved
    moved = tmp_path / "elsewhere" / "run"
    shutil.move(str(work / "run"), moved)
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, out, err = cli("fit", "--resume", str(moved), "--epochs", "6", "--quiet", "--trust-code")
    assert code == 0, err
    assert json.loads((moved / "summary.json").read_text())["epochs_run"] == 6


def test_a_built_in_data_name_stays_a_name_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "iris").mkdir()  # loading picks the built-in over the folder: config.yaml must say the same
    monkeypatch.chdir(tmp_path)
    cfg = trainwise.RunConfig(data="iris", init_from="iris", model="mlp:8")
    text = cfg.saved_yaml()
    assert "data: iris\n" in text and f"init_from: {tmp_path / 'iris'}\n" in text


# --- 2. tampered or mismatched files: errors naming the file ---------------------------------------------

@pytest.mark.parametrize("content, message", [
    ("{not json", "model.json' is not a valid trainwise file: cannot read it as JSON"),
    ("[1, 2]", "model.json' is not a valid trainwise file: the model recipe has no 'builder'"),
    ('{"builder": "mlp", "in_features": 4}', "model.json' is not a valid trainwise file: missing 'hidden', 'out_features'"),
    ('{"builder": "mlp", "in_features": 4, "hidden": "8", "out_features": 3, "activation": "relu", "dropout": 0.1, "batch_norm": false}',
     "'hidden' is \"8\", expected a list of positive integers"),
    ('{"builder": "mlp", "in_features": 4, "hidden": [8], "out_features": 3, "activation": "relu", "dropout": 0.1, '
     '"batch_norm": false, "extra": 1}', "unknown 'extra'"),
    ('{"builder": "mlp", "in_features": 4, "hidden": [8], "out_features": 3, "activation": "os.system", "dropout": 0.1, '
     '"batch_norm": false}', "'activation' is \"os.system\", expected one of relu"),
    ('{"builder": "ensemble", "kind": "multiclass", "members": [{"builder": "import", "target": "os:system"}]}',
     "missing 'members[0].file', 'members[0].sha256'"),
])
def test_malformed_model_json(run, rows, cli, content, message):
    (run / "model.json").write_text(content)
    code, _, err = cli("predict", str(run), rows)
    assert code == 2 and message in err and "internal error" not in err, err


def test_model_json_that_does_not_fit_the_weights(run, rows, cli):
    recipe = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**recipe, "hidden": [10 ** 9]}))  # checked on the meta device: no memory spent
    code, _, err = cli("predict", str(run), rows)
    assert code == 2 and "model.safetensors' is not a valid trainwise file: tensor '1.weight' has shape (8, 4)" in err
    assert "needs (1000000000, 4)" in err


@pytest.mark.parametrize("tamper, message", [
    (lambda p: save_file({"1.weight": torch.zeros(5, 4), "1.bias": torch.zeros(5), "3.weight": torch.zeros(3, 5),
                          "3.bias": torch.zeros(3)}, str(p)), "tensor '1.weight' has shape (5, 4) (torch.float32), but"),
    (lambda p: save_file({"1.weight": torch.zeros(8, 4)}, str(p)), "its tensors do not fit the model described by"),
    (lambda p: save_file({k: v.double() for k, v in read_safetensors(p).items()}, str(p)), "(torch.float64)"),
    (lambda p: p.write_bytes(b"\x00" * 40), "cannot read it as safetensors"),
])
def test_tampered_model_safetensors(run, rows, cli, tamper, message):
    tamper(run / "model.safetensors")
    for argv in (["predict", str(run), rows], ["evaluate", str(run), "--force-test"], ["report", str(run)]):
        code, _, err = cli(*argv)
        assert code == 2 and "model.safetensors' is not a valid trainwise file" in err and message in err, err


@pytest.mark.parametrize("edit, message", [
    (lambda pp: "{oops", "cannot read it as JSON"),
    (lambda pp: json.dumps({k: v for k, v in pp.items() if k != "target"}), "missing 'target'"),
    (lambda pp: json.dumps({**pp, "features": {**pp["features"], "mean": "zero"}}), "'features.mean' is \"zero\""),
    (lambda pp: json.dumps({**pp, "features": {**pp["features"], "std": [1.0, 0.0, 1.0, 1.0]}}), "'features.std' is [1.0, 0.0"),
    (lambda pp: json.dumps({**pp, "kind": "binary"}), "kind 'binary', loss 'cross_entropy' and task 'classification' contradict"),
    (lambda pp: json.dumps({**pp, "class_names": ["a", "b"]}), "needs matching 'class_names' and 'target.classes' (found 2 and 3)"),
    (lambda pp: json.dumps({**pp, "class_names": ["a", "b", "c", "d"], "target": {**pp["target"], "classes": [0, 1, 2, 3]}}),
     "it has 4 classes but the model in model.json has 3 outputs"),
    (lambda pp: json.dumps({**pp, "image": {"channels": 2, "size": [8, 8]}}), "'image.channels' is 2, expected 1 or 3"),
    (lambda pp: json.dumps({**pp, "features": {**pp["features"], "encoded": {"city": {"names": ["city~target"], "levels": ["a", "b"],
                                                                                      "values": [[0.1]], "default": [0.5]}}}}),
     "'features.encoded' is {\"city\""),
    (lambda pp: json.dumps({**pp, "features": {**pp["features"], "many_levels": "embed"}}), "expected one of target, pool"),
])
def test_malformed_preprocess_json(run, rows, cli, edit, message):
    pp = json.loads((run / "preprocess.json").read_text())
    (run / "preprocess.json").write_text(edit(pp))
    code, _, err = cli("predict", str(run), rows)
    assert code == 2 and "preprocess.json' is not a valid trainwise file" in err and message in err, err


def test_malformed_summary_json(run, cli):
    (run / "summary.json").write_text(json.dumps({"status": "completed", "test_evaluations": "many"}))
    code, _, err = cli("evaluate", str(run))
    assert code == 2 and "summary.json' is not a valid trainwise file: 'test_evaluations' is \"many\"" in err


# --- resume: the checkpoint must belong to the run and be possible ---------------------------------------

class _StopBefore(trainwise.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, trainer, *, epoch):
        if epoch == self.epoch:  # the previous epoch and its checkpoint are complete
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def stopped_runs(tmp_path_factory):
    """Two interrupted iris runs after 2 of 5 epochs (mlp:8 and mlp:16): resumable, with checkpoints."""
    root = tmp_path_factory.mktemp("stopped")
    for name, model in (("a", "mlp:8"), ("b", "mlp:16")):
        trainwise.fit("iris", run_dir=root / name, epochs=5, quiet=True, model=model, callbacks=[_StopBefore(3)],
                      schedule="none")  # resumed with other --epochs: a schedule over the budget refuses that
    return root


@pytest.fixture
def stopped(stopped_runs, tmp_path):
    shutil.copytree(stopped_runs / "a", tmp_path / "a")
    return tmp_path / "a"


def _edit_checkpoint(run_dir: Path, **changes) -> None:
    path = run_dir / "checkpoints" / "last.safetensors"
    save_checkpoint(path, {**load_checkpoint(path), **changes})


def _resume_refused(cli, run_dir: Path, message: str, *extra: str) -> None:
    before = {n: (run_dir / n).read_bytes() for n in ("summary.json", "model.safetensors", "metrics.csv", "config.yaml")}
    code, _, err = cli("fit", "--resume", str(run_dir), "--quiet", *extra)
    assert code == 2 and message in err and "internal error" not in err, err
    assert {n: (run_dir / n).read_bytes() for n in before} == before  # nothing was written


def test_another_models_checkpoint_is_refused_on_resume(stopped, stopped_runs, cli):
    shutil.copy(stopped_runs / "b" / "checkpoints" / "last.safetensors", stopped / "checkpoints" / "last.safetensors")
    _resume_refused(cli, stopped, f"'{stopped / 'checkpoints' / 'last.safetensors'}' is not a valid trainwise file: "
                                  "tensor '1.weight' has shape (16, 4) (torch.float32), but this run's model needs (8, 4)")


@pytest.mark.parametrize("changes, message", [
    ({"epoch": -1}, "'epoch' is -1, expected an integer >= 0"),
    ({"step": -3}, "'step' is -3, expected an integer >= 0"),
    ({"step": 1}, "its step counter (1) is below its epoch counter (2)"),
    ({"epoch": 9, "history": [{"epoch": i + 1} for i in range(9)], "step": 99}, "says 9 epochs are done, but the run's config.yaml allows only 5"),
    ({"epoch": 1}, "its history has 2 epoch rows but its epoch counter says 1"),
    ({"history": [{"epoch": 1}, {"epoch": 7}]}, "history row 2 says epoch 7"),
    ({"train_time_s": "fast"}, "'train_time_s' is \"fast\""),
    ({"rng": {"torch": torch.zeros(3, dtype=torch.uint8), "cuda": []}}, "'rng.torch' is a tensor of shape (3,)"),
    ({"optimizer": {"state": {}, "param_groups": [{"params": [0, 1]}]}}, "its optimizer has parameter groups of sizes [2]"),
    ({"callbacks": {"0:EarlyStopping": {"best": "x", "best_epoch": 1, "wait": 0}}}, "restoring callback 0:EarlyStopping failed"),
])
def test_impossible_checkpoint_counters_are_refused(stopped, cli, changes, message):
    _edit_checkpoint(stopped, **changes)
    _resume_refused(cli, stopped, f"'{stopped / 'checkpoints' / 'last.safetensors'}'")
    _resume_refused(cli, stopped, message)


def test_optimizer_state_of_another_shape_is_refused(stopped, stopped_runs, cli):
    other = load_checkpoint(stopped_runs / "b" / "checkpoints" / "last.safetensors")
    _edit_checkpoint(stopped, optimizer=other["optimizer"])
    _resume_refused(cli, stopped, "optimizer state 'exp_avg' of parameter 0 has shape (16, 4), but the parameter has (8, 4)")


def test_fewer_epochs_than_done_and_edited_model_json_are_refused(stopped, cli):
    _resume_refused(cli, stopped, "--epochs 1 is below the 2 epochs", "--epochs", "1")
    recipe = json.loads((stopped / "model.json").read_text())
    (stopped / "model.json").write_text(json.dumps({**recipe, "hidden": [16]}))
    _resume_refused(cli, stopped, "model.json' does not describe the model of")
    (stopped / "model.json").write_text(json.dumps({**recipe, "builder": "import"}))
    _resume_refused(cli, stopped, "model.json' is not a valid trainwise file: missing 'target'")


def test_resume_still_works_after_the_checks(stopped, cli):
    code, _, err = cli("fit", "--resume", str(stopped), "--quiet")
    assert code == 0, err
    assert json.loads((stopped / "summary.json").read_text())["epochs_run"] == 5


def test_resume_of_a_user_code_run_needs_trust_and_the_same_file(tmp_path, blobs, monkeypatch, cli):
    (tmp_path / "mymodel.py").write_text(MODEL_CODE)
    monkeypatch.chdir(tmp_path)
    X, y = blobs
    np.savez(tmp_path / "blobs.npz", X=X, y=y)
    killed = tmp_path / "killed"
    script = ("import os, sys, trainwise\nclass Stop(trainwise.Callback):\n"
              "    def on_epoch_start(self, trainer, *, epoch):\n        if epoch == 3: os._exit(9)\n"
              "trainwise.fit('blobs.npz', model='mymodel.py:build', run_dir=sys.argv[1], epochs=5, quiet=True, callbacks=[Stop()])\n")
    proc = subprocess.run([sys.executable, "-c", script, str(killed)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr  # stopped hard after epoch 2: a checkpoint and the up-front model.json only
    assert not (killed / "model.safetensors").exists() and (killed / "model.json").is_file()
    code, _, err = cli("fit", "--resume", str(killed), "--quiet")
    assert code == 2 and "user code" in err and "--trust-code" in err
    (tmp_path / "mymodel.py").write_text(MODEL_CODE + "# edited\n")
    code, _, err = cli("fit", "--resume", str(killed), "--quiet", "--trust-code")
    assert code == 2 and "changed since the run was trained" in err
    (tmp_path / "mymodel.py").write_text(MODEL_CODE)
    code, _, err = cli("fit", "--resume", str(killed), "--quiet", "--trust-code")
    assert code == 0, err
    assert json.loads((killed / "summary.json").read_text())["epochs_run"] == 5
    code, _, err = cli("fit", "--trust-code", "--data", "iris")
    assert code == 2 and "--trust-code is for --resume" in err
