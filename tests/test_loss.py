"""Symmetric InfoNCE."""

import torch
import torch.nn.functional as F
from firstwords.export.loss import batch_accuracy, infonce_loss

torch.set_num_threads(1)


def unit(x):
    return F.normalize(x, dim=-1)


def test_matched_pairs_give_the_lowest_loss():
    torch.manual_seed(0)
    e = unit(torch.randn(8, 16))
    matched = infonce_loss(e, e, 1 / 0.07)
    shuffled = infonce_loss(e, e[torch.randperm(8)], 1 / 0.07)
    random = infonce_loss(e, unit(torch.randn(8, 16)), 1 / 0.07)
    assert matched < random and matched < shuffled
    assert matched < 0.5
    # orthogonal matched pairs at a high scale: loss -> 0
    eye = torch.eye(8)
    assert infonce_loss(eye, eye, 100.0) < 1e-6


def test_symmetric_in_its_two_arguments():
    torch.manual_seed(1)
    a, b = unit(torch.randn(6, 8)), unit(torch.randn(6, 8))
    assert torch.allclose(infonce_loss(a, b, 10.0), infonce_loss(b, a, 10.0))


def test_equals_mean_of_both_cross_entropies():
    torch.manual_seed(2)
    a, b = unit(torch.randn(5, 8)), unit(torch.randn(5, 8))
    logits = 7.0 * a @ b.t()
    t = torch.arange(5)
    want = (F.cross_entropy(logits, t) + F.cross_entropy(logits.t(), t)) / 2
    assert torch.allclose(infonce_loss(a, b, 7.0), want)
    # uninformative embeddings: loss = log(N)
    same = unit(torch.ones(5, 8))
    assert torch.allclose(infonce_loss(same, same, 7.0), torch.log(torch.tensor(5.0)))


def test_gradient_pulls_pairs_together():
    torch.manual_seed(3)
    a = torch.randn(4, 8, requires_grad=True)
    b = unit(torch.randn(4, 8))
    before = infonce_loss(unit(a), b, 10.0)
    before.backward()
    with torch.no_grad():
        a2 = a - 0.5 * a.grad
    assert infonce_loss(unit(a2), b, 10.0) < before
    assert batch_accuracy(b, b) == (1.0, 1.0)
