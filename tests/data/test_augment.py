"""Batched augmentation: parsing, determinism, shapes and ranges, each op's effect, training batches only."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import trainwise
from trainwise.data.augment import Augment, AugmentedBatches, parse_augment
from trainwise.data.batching import TensorBatches
from trainwise.errors import TrainwiseError


def _batch(B=8, C=1, H=12, W=12):
    x = torch.rand(B, C, H, W, generator=torch.Generator().manual_seed(0))
    return (x - 0.5) / 0.5  # as the data arrive: normalized with the lecture's 0.5 / 0.5


def test_parse():
    assert parse_augment("flip,rotate=15,crop=0.7,jitter") == {"flip": 0.5, "rotate": 15.0, "crop": 0.7, "jitter": 0.2}
    assert parse_augment("none") == {} and parse_augment(None) == {}
    with pytest.raises(TrainwiseError, match="did you mean 'rotate'"):
        parse_augment("rotat=10")
    with pytest.raises(TrainwiseError, match=r"augment 'crop=1.5': 1.5 is outside \[0.01, 1\]"):
        parse_augment("crop=1.5")
    with pytest.raises(TrainwiseError, match="invalid option value augment='flip,rotate=x'"):
        trainwise.RunConfig.build({"augment": "flip,rotate=x"}, source="option")


def test_deterministic_under_a_seed_and_seeds_differ():
    x = _batch()
    spec = "flip,rotate=20,crop=0.6,jitter=0.3"
    a, b, c = (Augment(spec, mean=[0.5], std=[0.5], seed=s) for s in (1, 1, 2))
    out_a, out_b, out_c = a(x), b(x), c(x)
    assert torch.equal(out_a, out_b) and not torch.allclose(out_a, out_c)
    assert not torch.equal(a(x), out_a)  # a new draw per batch
    for _ in range(2):  # mid-chunk, then across a chunk boundary (chunk of 8 images, batches of 8)
        state = a.state_dict()
        first, second = a(x), a(x)
        fresh = Augment(spec, mean=[0.5], std=[0.5], seed=99)
        fresh.load_state_dict(state)
        assert torch.equal(fresh(x), first) and torch.equal(fresh(x), second)  # checkpoints rely on this
    small = Augment(spec, mean=[0.5], std=[0.5], seed=1, chunk=8)
    outs = [small(x) for _ in range(3)]
    assert not torch.equal(outs[0], outs[1]) and not torch.equal(outs[1], outs[2])  # each batch a new chunk


@pytest.mark.parametrize("spec", ["flip", "rotate=30", "crop=0.5", "translate=0.2", "jitter=0.5", "flip,vflip,rotate=10,crop=0.8,jitter=0.2"])
def test_shape_and_value_range(spec):
    x = _batch(C=3, H=10, W=14)
    out = Augment(spec, mean=[0.5] * 3, std=[0.5] * 3, seed=0)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= -1 - 1e-5 and out.max() <= 1 + 1e-5  # pixels stay in [0, 1] before normalization
    assert not torch.allclose(out, x)


def test_each_op_does_what_it_says():
    x = _batch(B=64)
    flipped = Augment({"flip": 1.0}, mean=[0.5], std=[0.5])(x)  # p = 1: every image mirrored left-right
    torch.testing.assert_close(flipped, x.flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(Augment({"vflip": 1.0}, mean=[0.5], std=[0.5])(x), x.flip(-2), atol=1e-5, rtol=0)
    half = Augment({"flip": 0.5}, mean=[0.5], std=[0.5], seed=3)(x)
    n_flipped = sum(torch.allclose(half[i], x[i].flip(-1), atol=1e-5) for i in range(64))
    assert 20 <= n_flipped <= 44
    # rotation about the centre: a centred bright square keeps its centre of mass; the lecture's ±10° bound holds
    img = torch.full((64, 1, 21, 21), -1.0)
    img[:, :, 6:15, 8:13] = 1.0
    rot = Augment({"rotate": 10.0}, mean=[0.5], std=[0.5])(img)
    pix = (rot * 0.5 + 0.5)[:, 0]
    ys, xs = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    assert torch.allclose((pix * ys).sum((1, 2)) / pix.sum((1, 2)), torch.full((64,), 10.0), atol=0.05)
    angles = []
    for p in pix:  # orientation of the square's principal axis, from second moments
        m = p / p.sum()
        cy, cx = (m * ys).sum(), (m * xs).sum()
        cov = torch.tensor([[(m * (xs - cx) ** 2).sum(), (m * (xs - cx) * (ys - cy)).sum()],
                            [(m * (xs - cx) * (ys - cy)).sum(), (m * (ys - cy) ** 2).sum()]])
        v = torch.linalg.eigh(cov).eigenvectors[:, -1]
        a = float(torch.rad2deg(torch.atan2(v[0], v[1])))  # the long axis' angle from vertical
        angles.append((a + 90) % 180 - 90)
    assert max(abs(a) for a in angles) <= 10.5 and np.std(angles) > 2
    # jitter: brightness/contrast factors in [0.5, 1.5] change each image's mean by at most that factor
    flat = torch.full((32, 1, 8, 8), 0.0)  # pixel value 0.5 everywhere
    jit = Augment({"jitter": 0.5}, mean=[0.5], std=[0.5])(flat) * 0.5 + 0.5
    means = jit.mean((1, 2, 3))
    assert means.min() >= 0.25 - 1e-5 and means.max() <= 0.75 + 1e-5 and means.std() > 0.05
    # crop zooms in: a one-pixel border frame moves out of view in at least some images
    framed = torch.full((32, 1, 16, 16), -1.0)
    framed[:, :, 0, :] = framed[:, :, -1, :] = framed[:, :, :, 0] = framed[:, :, :, -1] = 1.0
    cropped = Augment({"crop": 0.5}, mean=[0.5], std=[0.5])(framed)
    assert (cropped * 0.5 + 0.5).sum((1, 2, 3)).min() < (framed * 0.5 + 0.5).sum((1, 2, 3)).min() * 0.8


def test_only_training_batches_are_augmented(fashion_dir):
    seen = {}

    class Spy(trainwise.Callback):
        def on_fit_start(self, trainer):
            seen["train"] = type(trainer.train_data).__name__

    r = trainwise.fit("fashion-mnist", data_dir=str(fashion_dir), model="mlp:32", augment="vflip=1.0", epochs=2, restore_best=False,
                      early_stopping=False, quiet=True, checkpoint=False, callbacks=[Spy()],
                      run_dir=str(fashion_dir.parent / "run"))
    assert seen["train"] == "AugmentedBatches"
    # the recorded validation loss is the model's loss on the unflipped validation images
    Xv, yv = r.data.arrays["val"]
    with torch.no_grad():
        r.model.eval()
        loss = torch.nn.functional.cross_entropy(r.model(torch.from_numpy(Xv)), torch.from_numpy(yv)).item()
    assert loss == pytest.approx(r.history[-1]["val/loss"], rel=1e-5)
    assert r.summary["augment"] == "vflip=1.0"


def test_augmented_batches_pass_through():
    X, y = torch.zeros(10, 1, 4, 4), torch.arange(10)
    inner = TensorBatches(X, y, batch_size=4, seed=0)
    aug = AugmentedBatches(inner, Augment("jitter", mean=[0.0], std=[1.0], seed=0))
    assert len(aug) == 3 and aug.num_samples == 10 and torch.equal(aug.head(2), X[:2])
    state = aug.state_dict()
    first = [yy.tolist() for _, yy in aug]
    aug.load_state_dict(state)
    assert [yy.tolist() for _, yy in aug] == first


def test_augment_needs_images():
    with pytest.raises(TrainwiseError, match=r"augment='flip' needs image data .* shape \(4,\)"):
        trainwise.fit("iris", augment="flip", epochs=1, quiet=True, checkpoint=False, run_dir="/tmp/tw-never")


@pytest.mark.parametrize("C", [1, 3])
def test_fused_path_matches_a_pixel_space_reference(C):
    """The fused implementation equals the textbook one: denormalize, affine_grid + grid_sample, brightness,
    contrast about the mean gray, saturation, clip, normalize."""
    import torch.nn.functional as F

    mean, std = [0.4, 0.5, 0.6][:C], [0.2, 0.25, 0.3][:C]
    aug = Augment("flip,rotate=15,crop=0.7,translate=0.1,jitter=0.4", mean=mean, std=std, seed=5)
    x = torch.rand(6, C, 9, 13, generator=torch.Generator().manual_seed(1))
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    state = aug.generator.get_state()
    out = aug(x)
    g = torch.Generator()
    g.set_state(state)
    u = torch.rand(aug.chunk, 12, generator=g, dtype=torch.float64).numpy()[:6]  # the first rows of the first chunk
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    p = x * s + m
    theta = torch.from_numpy(aug._affine(u, 9, 13)).float()
    p = F.grid_sample(p, F.affine_grid(theta, list(p.shape), align_corners=False), align_corners=False)
    f = torch.from_numpy(1 - 0.4 + 0.8 * u[:, 7:10]).float()
    p = p * f[:, 0].view(-1, 1, 1, 1)
    w = torch.tensor([0.299, 0.587, 0.114] if C == 3 else [1.0]).view(1, -1, 1, 1)
    gray = (p * w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    p = (p - gray) * f[:, 1].view(-1, 1, 1, 1) + gray
    if C == 3:
        gp = (p * w).sum(1, keepdim=True)
        p = (p - gp) * f[:, 2].view(-1, 1, 1, 1) + gp
    ref = (p.clamp(0, 1) - m) / s
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=0)


@pytest.mark.parametrize("C", [1, 3])
def test_brightness_is_the_lectures_colour_jitter(C):
    """``brightness=v`` is ColorJitter(brightness=v): each image's pixels times one factor in [1-v, 1+v], clipped
    to [0, 1]; contrast and saturation untouched. Not together with ``jitter``."""
    mean, std = [0.4, 0.5, 0.6][:C], [0.2, 0.25, 0.3][:C]
    aug = Augment("brightness=0.3", mean=mean, std=std, seed=2)
    x = torch.rand(5, C, 6, 7, generator=torch.Generator().manual_seed(0))
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    g = torch.Generator()
    g.set_state(aug.generator.get_state())
    out = aug((x - m) / s) * s + m
    u = torch.rand(aug.chunk, 12, generator=g, dtype=torch.float64)[:5, 7].float()
    b = (1 - 0.3 + 0.6 * u).view(-1, 1, 1, 1)
    torch.testing.assert_close(out, (x * b).clamp(0, 1), atol=2e-5, rtol=0)
    with pytest.raises(TrainwiseError, match="has both jitter .* and brightness"):
        parse_augment("jitter,brightness")
