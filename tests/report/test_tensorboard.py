"""TensorBoard event files, read back with TensorBoard's own reader."""
import pytest

import trainwise


def test_tensorboard_scalars_histograms_and_graph(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = trainwise.fit("iris", run_dir=tmp_path / "r", epochs=6, quiet=True, early_stopping=False, tensorboard=True,
                      histogram_every=2, clip_norm=5.0)
    ea = EventAccumulator(str(tmp_path / "r" / "tensorboard"), size_guidance={"histograms": 0, "scalars": 0})
    ea.Reload()
    tags = ea.Tags()
    for key in ("train/loss", "val/loss", "val/accuracy", "lr", "train/grad_norm"):
        events = ea.Scalars(key)
        assert [e.step for e in events] == list(range(1, 7))
        assert [e.value for e in events] == pytest.approx([row[key] for row in r.history], rel=1e-6)
    assert "weights/1.weight" in tags["histograms"] and "gradients/5.bias" in tags["histograms"]
    assert [e.step for e in ea.Histograms("weights/1.weight")] == [1, 3, 5]
    norms = ea.Scalars("grad_norm/1.weight")
    assert [e.step for e in norms] == [1, 3, 5] and all(e.value > 0 for e in norms)
    assert tags["graph"] is True


def test_no_tensorboard_by_default(tmp_path):
    trainwise.fit("iris", run_dir=tmp_path / "r", epochs=1, quiet=True)
    assert not (tmp_path / "r" / "tensorboard").exists()
