"""Chapter 5, section 5.2 (loss -> gradient -> step), checked against PyTorch beyond the chapter's example."""

import pytest
import torch


def _loss(z, target):
    return -(target * torch.log_softmax(z, dim=-1)).sum()


def test_softmax_cross_entropy_gradient_is_p_minus_target():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        z = torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True)
        target = torch.softmax(torch.randn(7, generator=g, dtype=torch.float64), 0)
        _loss(z, target).backward()
        torch.testing.assert_close(z.grad, torch.softmax(z.detach(), 0) - target)
        h = 1e-6
        finite = torch.stack([(_loss(z.detach() + h * e, target) - _loss(z.detach() - h * e, target)) / (2 * h)
                              for e in torch.eye(7, dtype=torch.float64)])
        torch.testing.assert_close(finite, z.grad, atol=1e-8, rtol=0)


def test_too_large_a_learning_rate_overshoots():
    target = torch.tensor([0.75, 0.25], dtype=torch.float64)
    for lr, rises in ((1.0, False), (8.0, True)):
        z = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        losses = []
        for _ in range(8):
            loss = _loss(z, target)
            losses.append(loss.item())
            z.grad = None
            loss.backward()
            with torch.no_grad():
                z -= lr * z.grad
        assert any(b > a for a, b in zip(losses, losses[1:])) == rises


@pytest.mark.parametrize("lr, betas, eps", [(0.1, (0.9, 0.999), 1e-8), (0.01, (0.8, 0.99), 1e-6)])
def test_adam_by_kingma_and_ba_algorithm_1_equals_torch(lr, betas, eps):
    g = torch.Generator().manual_seed(1)
    target = torch.softmax(torch.randn(5, generator=g, dtype=torch.float64), 0)
    scales = torch.tensor([1.0, 0.01, 100.0, 1.0, 0.1], dtype=torch.float64)  # gradients of different sizes
    z = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([z], lr=lr, betas=betas, eps=eps)
    theta, m, v = torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    for t in range(1, 11):
        opt.zero_grad()
        _loss(z * scales, target).backward()
        opt.step()
        w = theta.clone().requires_grad_()
        _loss(w * scales, target).backward()
        m = betas[0] * m + (1 - betas[0]) * w.grad
        v = betas[1] * v + (1 - betas[1]) * w.grad ** 2
        theta = theta - lr * (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + eps)
        torch.testing.assert_close(theta, z.detach())
