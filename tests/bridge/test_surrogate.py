"""Surrogate-gradient spike functions: the exact step forward, the surrogate backward."""

from __future__ import annotations

import math

import pytest
import torch

from t1c.bridge.surrogate import ATan, atan, atan_derivative, heaviside, resolve, spike


def test_spike_forward_is_the_exact_step_for_any_surrogate() -> None:
    x = torch.tensor([-1.0, -1e-7, 0.0, 1e-7, 2.0], requires_grad=True)
    fast_sigmoid = lambda v: torch.sigmoid(5 * v)  # noqa: E731 - forward is not a step
    for surrogate in (atan(), fast_sigmoid):
        assert spike(x, surrogate, strict=True).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
        assert spike(x, surrogate, strict=False).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_custom_surrogate_gives_its_own_gradient() -> None:
    x = torch.linspace(-1, 1, 9, requires_grad=True)
    spike(x, lambda v: torch.sigmoid(4 * v), strict=True).sum().backward()
    s = torch.sigmoid(4 * x.detach())
    torch.testing.assert_close(x.grad, 4 * s * (1 - s))


def test_atan_gradient_is_the_documented_formula() -> None:
    x = torch.linspace(-2, 2, 21, requires_grad=True)
    spike(x, atan(alpha=3.0), strict=False).sum().backward()
    expected = 1.5 / (1 + (math.pi / 2 * 3.0 * x.detach()) ** 2)
    torch.testing.assert_close(x.grad, expected)
    torch.testing.assert_close(ATan(3.0).derivative(x.detach()), expected)


def test_no_gradient_skips_autograd() -> None:
    x = torch.randn(5)
    out = spike(x, atan(), strict=True)
    assert out.grad_fn is None and torch.equal(out, (x > 0).float())


def test_surrogate_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="same shape"):
        spike(torch.randn(3, requires_grad=True), lambda v: v.sum(), strict=True)


def test_resolve_defaults_to_atan_and_refuses_non_callables() -> None:
    assert isinstance(resolve(None), ATan) and resolve(None).alpha == 2.0
    surrogate = atan(0.5)
    assert resolve(surrogate) is surrogate
    with pytest.raises(TypeError, match="spike_grad"):
        resolve("atan")
    assert repr(atan(0.5)) == "atan(alpha=0.5)"


def test_atan_gradient_equals_snntorch() -> None:
    snn_surrogate = pytest.importorskip("snntorch.surrogate")
    x1 = torch.linspace(-2, 2, 41, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    spike(x1, atan(), strict=True).sum().backward()
    snn_surrogate.atan()(x2).sum().backward()
    assert torch.equal(x1.grad, x2.grad) and x1.grad.abs().min() > 0
    assert spike(torch.zeros(1), atan(), strict=False).item() == 1.0
    with pytest.raises(ValueError, match="alpha"):
        atan(alpha=0)


def test_heaviside_and_in_place_atan_are_the_plain_expressions_bit_for_bit() -> None:
    x = torch.cat(
        [torch.randn(1000) * 3, torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan")])]
    )
    for strict in (True, False):
        assert torch.equal(heaviside(x, strict), (x > 0 if strict else x >= 0).float())
    assert heaviside(x.double(), True).dtype == torch.float64
    for alpha in (2.0, 0.7, 3.3):
        fast, plain = atan_derivative(x.clone(), alpha, inplace=True), atan_derivative(x, alpha)
        torch.testing.assert_close(fast, plain, rtol=0, atol=0, equal_nan=True)
