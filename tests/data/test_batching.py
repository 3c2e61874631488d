import torch

from trainwise.data import TensorBatches


def test_each_epoch_is_a_permutation_in_batches():
    X, y = torch.arange(10.0)[:, None], torch.arange(10)
    b = TensorBatches(X, y, batch_size=4, seed=0)
    e1, e2 = [torch.cat([yy for _, yy in b]) for _ in range(2)]
    assert sorted(e1.tolist()) == list(range(10)) and sorted(e2.tolist()) == list(range(10))
    assert not torch.equal(e1, e2)  # reshuffled every epoch
    assert [len(yy) for _, yy in b] == [4, 4, 2] and len(b) == 3
    for xb, yb in b:
        assert torch.equal(xb[:, 0].long(), yb)  # rows stay paired with their targets


def test_order_is_seeded_and_resumable():
    X, y = torch.randn(50, 2), torch.arange(50)
    a, b = TensorBatches(X, y, batch_size=8, seed=7), TensorBatches(X, y, batch_size=8, seed=7)
    assert torch.equal(torch.cat([yy for _, yy in a]), torch.cat([yy for _, yy in b]))
    state = a.state_dict()
    first = torch.cat([yy for _, yy in a])
    a.load_state_dict(state)
    assert torch.equal(torch.cat([yy for _, yy in a]), first)
