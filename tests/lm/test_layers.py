"""The inference products of `lm.layers` (transposed float, int8) equal `F.linear` within their precision, and
never serve a stale copy of a weight."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lm.layers import FEW_ROWS, Int8Products, Linear, StackedHeads, int8_weights, products_for
from lm.sampling import GenerationConfig, sample_logits


def linear(in_features=32, out_features=48, bias=False) -> Linear:
    torch.manual_seed(0)
    return Linear(in_features, out_features, bias=bias)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (2, 1), (4, 4), (3, 5)])
def test_fast_path_equals_f_linear(bias, shape):
    layer = linear(bias=bias)
    x = torch.randn(*shape, layer.in_features)
    with torch.no_grad():
        fast = layer(x)
    assert torch.allclose(fast, F.linear(x, layer.weight, layer.bias), atol=1e-5)
    assert layer.products.transposed._value is not None  # the few-row path was the one taken


def test_many_rows_and_autograd_take_f_linear():
    layer = linear()
    with torch.no_grad():
        layer(torch.randn(FEW_ROWS + 1, layer.in_features))
    assert layer.products.transposed._value is None
    x = torch.randn(2, layer.in_features, requires_grad=True)
    layer(x).sum().backward()  # gradients flow: training never uses the cached copy
    assert layer.products.transposed._value is None and x.grad is not None and layer.weight.grad is not None


def test_copy_follows_the_weight():
    layer = linear()
    x = torch.randn(2, layer.in_features)
    with torch.no_grad():
        layer(x)
        layer.weight.mul_(2.0)  # in place: the version counter moves
        assert torch.allclose(layer(x), F.linear(x, layer.weight), atol=1e-5)
        layer.load_state_dict({"weight": torch.randn_like(layer.weight)})
        assert torch.allclose(layer(x), F.linear(x, layer.weight), atol=1e-5)
        layer.weight = nn.Parameter(torch.randn_like(layer.weight))  # replaced
        assert torch.allclose(layer(x), F.linear(x, layer.weight), atol=1e-5)
        layer.to(torch.float64)  # cast
        x64 = x.double()
        assert torch.allclose(layer(x64), F.linear(x64, layer.weight), atol=1e-10)


def test_inference_tensors_are_not_cached():
    with torch.inference_mode():
        layer = linear()
        x = torch.randn(1, layer.in_features)
        assert torch.allclose(layer(x), F.linear(x, layer.weight), atol=1e-6)
    assert layer.products.transposed._value is None


def test_stacked_heads_equal_each_head():
    torch.manual_seed(0)
    heads = nn.ModuleList(Linear(16, 11, bias=False) for _ in range(3))
    hidden = torch.randn(2, 1, 16)
    with torch.no_grad():
        stacked = StackedHeads()(heads, hidden)  # (B, K, S, V)
        assert stacked.shape == (2, 3, 1, 11)
        for k, head in enumerate(heads):
            assert torch.allclose(stacked[:, k], F.linear(hidden, head.weight), atol=1e-5)


def test_stacked_heads_leave_a_wrapped_head_to_itself():
    """A head wrapped by an adapter (anything but a plain Linear) adds its own term: no fused product then."""

    class Shifted(nn.Module):
        def __init__(self, base: nn.Module) -> None:
            super().__init__()
            self.base, self.weight = base, base.weight

        def forward(self, x):
            return self.base(x) + 1.0

    torch.manual_seed(0)
    heads = nn.ModuleList([Linear(16, 11, bias=False), Shifted(Linear(16, 11, bias=False))])
    stacker = StackedHeads()
    x = torch.randn(1, 1, 16)
    with torch.no_grad():
        out = stacker(heads, x)
    assert stacker.products.transposed._value is None
    assert torch.allclose(out[:, 0], F.linear(x, heads[0].weight), atol=1e-5)
    assert torch.allclose(out[:, 1], F.linear(x, heads[1].weight) + 1.0, atol=1e-5)


def test_sampler_draws_in_proportion_to_the_kept_probabilities():
    generator = torch.Generator().manual_seed(0)
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0, -1.0]]).repeat(20000, 1)
    draws = sample_logits(logits, GenerationConfig(top_k=4), generator)
    expected = logits[0, :4].softmax(0)
    observed = torch.bincount(draws, minlength=6).float() / len(draws)
    assert observed[4:].sum() == 0
    assert torch.allclose(observed[:4], expected, atol=0.015)  # ~4 standard errors at n = 20000


# -- int8 weights ----------------------------------------------------------------------------------------------


def int8_linear(in_features=64, out_features=48, bias=False) -> Linear:
    layer = linear(in_features, out_features, bias)
    layer.products = Int8Products()
    return layer


def test_int8_weights_round_each_row_to_its_own_scale():
    torch.manual_seed(0)
    weight = torch.randn(5, 32) * torch.tensor([[1e-3], [1.0], [10.0], [0.0], [3.0]])
    quantized, scales = int8_weights(weight)
    assert quantized.dtype == torch.int8 and scales.dtype == torch.bfloat16 and scales.shape == (5,)
    assert int(quantized.abs().max()) == 127 and bool(torch.isfinite(scales.float()).all())
    restored = quantized.float() * scales.float()[:, None]
    # half a level of rounding, plus bfloat16's rounding of the scale (2^-8 relative)
    bound = weight.abs().amax(1, keepdim=True) * (0.5 / 127 + 2.0 ** -8)
    assert bool(((restored - weight).abs() <= bound + 1e-12).all())


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows", [1, 2, 5, FEW_ROWS + 7])
def test_int8_path_is_f_linear_within_its_precision(bias, rows):
    layer = int8_linear(bias=bias)
    x = torch.randn(rows, layer.in_features)
    with torch.no_grad():
        y = layer(x)
        exact = F.linear(x, layer.weight, layer.bias)
    assert layer.products.quantized._value is not None  # the int8 path was the one taken, at any row count
    assert y.dtype == x.dtype and y.shape == exact.shape
    assert float((y - exact).abs().max()) <= 0.02 * float(exact.abs().max())


def test_int8_path_leaves_training_and_odd_widths_to_f_linear():
    layer = int8_linear()
    x = torch.randn(2, layer.in_features, requires_grad=True)
    assert torch.equal(layer(x), F.linear(x, layer.weight))  # autograd: the stored weights, exactly
    assert layer.products.quantized._value is None
    odd = int8_linear(in_features=40)  # torch's int8 kernel needs inputs in blocks of 16
    with torch.no_grad():
        x = torch.randn(2, 40)
        assert torch.equal(odd(x), F.linear(x, odd.weight))
    assert odd.products.quantized._value is None


def test_int8_copy_follows_the_weight():
    layer = int8_linear()
    x = torch.randn(2, layer.in_features)
    with torch.no_grad():
        first = layer(x)
        layer.weight.mul_(2.0)
        assert torch.allclose(layer(x), 2.0 * first, rtol=0.02, atol=1e-3)


def test_stacked_heads_in_int8_equal_each_head():
    torch.manual_seed(0)
    heads = nn.ModuleList(Linear(32, 11, bias=False) for _ in range(3))
    stacker = StackedHeads()
    stacker.products = products_for("int8")
    hidden = torch.randn(2, 1, 32)
    with torch.no_grad():
        stacked = stacker(heads, hidden)
        for k, head in enumerate(heads):
            exact = F.linear(hidden, head.weight)
            assert float((stacked[:, k] - exact).abs().max()) <= 0.02 * float(exact.abs().max())


def test_unknown_inference_weights_are_refused():
    with pytest.raises(ValueError, match="int4"):
        products_for("int4")
