"""The fused decoder loops: the same numbers and gradients as the autograd step loop."""

from __future__ import annotations

import pytest
import torch

from forecast.data.windows import WindowLayout
from forecast.models.fused import bahdanau as fused_bahdanau
from forecast.models.fused import luong as fused_luong
from forecast.models.lstm import LSTMConfig, LSTMNetwork

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

L, H, B = 12, 5, 4
LAYOUT = WindowLayout(L, H, ("y1", "y2"), ("p",), ("k1", "k2"))
FUSED = ["bahdanau", "luong_dot", "luong_general"]


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    shapes = {
        "past_target": (B, L, 2),
        "past_covariates": (B, L, 1),
        "past_known": (B, L, 2),
        "future_known": (B, H, 2),
        "future_target": (B, H, 2),
    }
    return {k: torch.randn(s, generator=g, dtype=torch.float64) for k, s in shapes.items()}


def _net(attention: str = "bahdanau", **kw) -> LSTMNetwork:
    torch.manual_seed(0)
    cfg = LSTMConfig.from_params(
        hidden_size=6, attention=attention, attention_dim=5, decoder="classic", **kw
    )
    return LSTMNetwork(LAYOUT, cfg).double()


def _run(net: LSTMNetwork, batch: dict, tf: float, fused: bool) -> tuple:
    """Outputs, parameter gradients and input gradients of a loss that reads both the
    predictions and the attention weights (so both output gradients are exercised)."""
    net.decoder.use_fast_path = fused
    net.zero_grad()
    inputs = {k: v.clone().requires_grad_(True) for k, v in batch.items()}
    out = net(inputs, teacher_forcing=tf, generator=torch.Generator().manual_seed(1))
    ramp = torch.linspace(0, 1, L, dtype=torch.float64)
    loss = out.prediction.square().sum() + (out.temporal_attention * ramp).sum()
    loss.backward()
    params = {n: p.grad.clone() for n, p in net.named_parameters()}
    grads = {k: v.grad for k, v in inputs.items() if v.grad is not None}
    return out, params, grads


@pytest.fixture(params=["kept", "recomputed"])
def activations(request, monkeypatch):
    """Both ways the Bahdanau backward gets the attention activations: kept from
    forward, or recomputed (what happens above `KEEP_ACTIVATIONS_BYTES`)."""
    if request.param == "recomputed":
        monkeypatch.setattr(fused_bahdanau, "KEEP_ACTIVATIONS_BYTES", 0)
    return request.param


CASES = [  # (attention, config, whether the Bahdanau backward recomputes activations)
    ("bahdanau", {}, False),
    ("bahdanau", {}, True),
    ("bahdanau", {"revin": False}, False),
    ("luong_dot", {}, False),
    ("luong_general", {"revin": False}, False),
    ("luong_general", {"attention_scale": False}, False),
    ("luong_general", {"bidirectional": True}, False),  # keys 2D wide, queries D
]


@pytest.mark.parametrize("tf", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("attention,kw,recompute", CASES)
def test_fused_equals_the_step_loop_in_float64(monkeypatch, attention, kw, recompute, tf):
    if recompute:  # what happens above KEEP_ACTIVATIONS_BYTES
        monkeypatch.setattr(fused_bahdanau, "KEEP_ACTIVATIONS_BYTES", 0)
    net = _net(attention, **kw).train()
    assert net.decoder.path(tf) in ("fused_bahdanau", "fused_luong", "one_call")
    (a, pa, ia), (b, pb, ib) = (_run(net, _batch(), tf, fused) for fused in (True, False))
    torch.testing.assert_close(a.prediction, b.prediction, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.temporal_attention, b.temporal_attention, rtol=0, atol=1e-12)
    assert pa.keys() == pb.keys() and ia.keys() == ib.keys()
    assert {"past_target", "future_known"} <= ia.keys()
    if tf > 0 and kw.get("revin", True):  # RevIN scales the fed-back truth: it has grad
        assert "future_target" in ia
    for name in pa:
        torch.testing.assert_close(pa[name], pb[name], rtol=1e-9, atol=1e-11, msg=name)
    for name in ia:
        torch.testing.assert_close(ia[name], ib[name], rtol=1e-9, atol=1e-11, msg=name)


def _gradcheck(node, inputs: tuple, extra: tuple = ()) -> None:
    """gradcheck of `node` in the three feeding modes; `inputs` holds the truth at 6."""
    truth = inputs[6]
    use = torch.tensor([[[True], [False], [True]], [[False], [True], [False]]])
    for fed, use_truth in ((None, None), (truth, None), (truth, use)):

        def fn(*xs, fed=fed, use_truth=use_truth):
            xs = list(xs)
            xs[6] = xs[6] if fed is not None else None
            return node.apply(*xs[:7], use_truth, *xs[7:], *extra)

        assert torch.autograd.gradcheck(fn, inputs)


def _randn(g: torch.Generator):
    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    return r


def test_gradcheck_of_the_bahdanau_node(activations):
    """Numerical against analytical gradients of the node itself, in every mode."""
    r = _randn(torch.Generator().manual_seed(0))
    b, n, h, d, a, t, k = 2, 3, 3, 2, 2, 1, 1  # n encoder steps
    state = (r(b, n, d), r(b, n, a), r(b, d), r(b, d), r(b, t), r(b, h, k), r(b, h, t))
    lstm = (r(4 * d, t + k + d), r(4 * d, d), r(4 * d), r(4 * d))
    _gradcheck(fused_bahdanau._BahdanauDecode, (*state, r(a, d), r(a), *lstm, r(t, 2 * d), r(t)))


def test_gradcheck_of_the_luong_node():
    r = _randn(torch.Generator().manual_seed(1))
    b, n, h, d, dk, t, k = 2, 3, 3, 2, 3, 1, 1
    state = (r(b, n, dk), r(b, n, d), r(b, d), r(b, d), r(b, t), r(b, h, k), r(b, h, t))
    lstm = (r(4 * d, t + k), r(4 * d, d), r(4 * d), r(4 * d))
    params = (*lstm, r(d, dk + d), r(d), r(t, d), r(t))
    _gradcheck(fused_luong._LuongDecode, (*state, *params), extra=(0.7,))


@pytest.mark.parametrize("attention", FUSED)
def test_no_grad_forward_equals_the_recorded_one(attention):
    net = _net(attention).eval()
    batch = _batch(2)
    with torch.no_grad():
        a = net(batch)
    b = net(batch)
    torch.testing.assert_close(a.prediction, b.prediction, rtol=0, atol=0)
    torch.testing.assert_close(a.temporal_attention, b.temporal_attention, rtol=0, atol=0)


@pytest.mark.parametrize(
    "attention,kw,train,tf,expected",
    [
        ("bahdanau", {}, True, 0.5, "bahdanau"),
        ("bahdanau", {"dropout": 0.2}, False, 0.5, "bahdanau"),  # dropout off in eval
        ("bahdanau", {"dropout": 0.2}, True, 0.5, None),  # the loop draws dropout masks
        ("bahdanau", {"num_layers": 2}, True, 0.5, None),
        ("bahdanau", {"feature_attention": True}, True, 0.5, "bahdanau"),  # DA-RNN
        ("bahdanau", {}, True, 1.0, "bahdanau"),
        ("luong_dot", {}, True, 0.5, "luong"),
        ("luong_general", {}, False, 0.0, "luong"),
        ("luong_dot", {}, True, 1.0, None),  # the one-call fast path instead
        ("luong_concat", {}, True, 0.5, None),
        ("local_p", {}, True, 0.5, None),
        ("none", {}, True, 0.5, None),
    ],
)
def test_when_the_fused_path_runs(monkeypatch, attention, kw, train, tf, expected):
    calls = []

    def spy(name: str, real):
        return lambda *args: calls.append(name) or real(*args)

    monkeypatch.setattr(
        "forecast.models.lstm_classic.bahdanau_decode",
        spy("bahdanau", fused_bahdanau.bahdanau_decode),
    )
    monkeypatch.setattr(
        "forecast.models.lstm_classic.luong_decode", spy("luong", fused_luong.luong_decode)
    )
    net = _net(attention, **kw).train(train)
    net(_batch(), teacher_forcing=tf, generator=torch.Generator().manual_seed(0))
    assert calls == ([expected] if expected else [])
    # The decoder's one decision says the same.
    path = net.decoder.path(tf)
    assert path == (f"fused_{expected}" if expected else path) and (expected or "fused" not in path)


@pytest.mark.parametrize("attention", FUSED)
def test_under_autocast_the_node_computes_in_float32(attention):
    """Under AMP the encoder's outputs arrive in bfloat16; the fused node takes float32
    copies, so its backward sees one dtype and the gradients come back in each input's
    own dtype, close to a float32 run."""
    torch.manual_seed(0)
    cfg = LSTMConfig.from_params(hidden_size=6, attention=attention, decoder="classic")
    dec = LSTMNetwork(LAYOUT, cfg).decoder
    g = torch.Generator().manual_seed(0)
    memory = torch.randn(B, L, 6, generator=g)
    h0, c0 = torch.randn(1, B, 6, generator=g), torch.randn(1, B, 6, generator=g)
    last, known = torch.randn(B, 2, generator=g), torch.randn(B, H, 2, generator=g)
    results = []
    for dtype in (torch.float32, torch.bfloat16):
        dec.zero_grad()
        m = memory.to(dtype).detach().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            pred, _, _ = dec(m, (h0.to(dtype), c0.to(dtype)), last, known, None, 0.0, None)
        pred.float().square().mean().backward()
        assert m.grad.dtype == dtype
        results.append((m.grad.float(), {n: p.grad.clone() for n, p in dec.named_parameters()}))
    (m32, p32), (m16, p16) = results
    torch.testing.assert_close(m16, m32, rtol=0.05, atol=0.01)
    for name, grad in p16.items():
        assert grad.dtype == torch.float32, name
        torch.testing.assert_close(grad, p32[name], rtol=0.05, atol=0.01, msg=name)


@pytest.mark.parametrize("attention", FUSED)
def test_double_backward_raises(attention):
    """The hand-written backward is not itself differentiable: asking for second
    derivatives must fail, never return wrong ones."""
    net = _net(attention).train()
    out = net(_batch(), teacher_forcing=0.0)
    with pytest.raises(RuntimeError, match="first derivatives only.*use_fast_path = False"):
        torch.autograd.grad(out.prediction.square().sum(), net.parameters(), create_graph=True)
    net.decoder.use_fast_path = False  # the step loop has them
    out = net(_batch(), teacher_forcing=0.0)
    grads = torch.autograd.grad(out.prediction.square().sum(), net.parameters(), create_graph=True)
    assert sum(g.square().sum() for g in grads).requires_grad


def test_non_contiguous_keys():
    """Direct callers may pass a transposed view as keys: the same result."""
    dec = _net().decoder.eval()
    g = torch.Generator().manual_seed(0)
    memory = torch.randn(B, L, 6, generator=g, dtype=torch.float64)
    keys2 = dec.attention.prepare_keys(memory)
    odd = keys2.transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    assert not odd.is_contiguous()
    state = (torch.zeros(1, B, 6, dtype=torch.float64),) * 2
    last = torch.zeros(B, 2, dtype=torch.float64)
    known = torch.zeros(B, H, 2, dtype=torch.float64)
    args = (state, last, known, None, None, dec.attention, dec.lstm, dec.head)
    with torch.no_grad():
        a = fused_bahdanau.bahdanau_decode(memory, keys2, *args)
        b = fused_bahdanau.bahdanau_decode(memory, odd, *args)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
