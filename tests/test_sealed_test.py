"""The test split is evaluated once per run; a second look is refused unless forced, and every look counts."""
import json

import pytest

import trainwise
from trainwise import TrainwiseError


def _count(run_dir):
    return json.loads((run_dir / "summary.json").read_text())["test_evaluations"]


def test_second_look_is_refused_then_counted_when_forced(tmp_path):
    r = trainwise.fit("iris", run_dir=tmp_path / "r", quiet=True, epochs=3)
    assert _count(r.run_dir) == 1
    with pytest.raises(TrainwiseError, match=r"already evaluated 1 time\(s\) \(test/loss .*optimistic.*HINT: .*--force-test"):
        trainwise.evaluate(r.run_dir)
    assert _count(r.run_dir) == 1  # a refused look is not a look
    trainwise.evaluate(r.run_dir, force_test=True)
    trainwise.evaluate(r.run_dir, force_test=True)
    assert _count(r.run_dir) == 3


def test_other_data_is_not_the_test_split(tmp_path, small_csv):
    r = trainwise.fit(str(small_csv), target="label", run_dir=tmp_path / "r", quiet=True, epochs=3)
    metrics = trainwise.evaluate(r.run_dir, data=str(small_csv))
    assert {"eval/loss", "eval/accuracy", "eval/f1", "eval/auroc"} <= set(metrics) and _count(r.run_dir) == 1  # binary: F1 etc. too


def test_unfinished_runs_have_not_looked(tmp_path):
    class CtrlC(trainwise.Callback):
        def on_epoch_end(self, trainer, *, epoch, logs):
            if epoch == 2:
                raise KeyboardInterrupt

    r = trainwise.fit("iris", run_dir=tmp_path / "r", quiet=True, epochs=5, callbacks=[CtrlC()], schedule="none")
    assert r.summary["test"] is None and r.summary["test_evaluations"] == 0
    done = trainwise.fit(resume=r.run_dir, quiet=True)
    assert done.summary["test_evaluations"] == 1
    longer = trainwise.fit(resume=r.run_dir, quiet=True, epochs=7)  # a finished run trained on looks again
    assert longer.summary["test_evaluations"] == 2
