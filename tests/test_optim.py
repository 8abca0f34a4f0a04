"""freenet.optim: optimizer updates (by hand and against PyTorch), param groups, state round trips,
learning-rate schedules, and a small end-to-end training run."""

import json
import math

import numpy as np
import pytest

import freenet as fn
from freenet import FreenetError, nn, optim
from freenet.nn import functional as F
from freenet.optim import lr_scheduler


def _param(values, dtype=np.float32):
    return nn.Parameter(fn.tensor(np.asarray(values, dtype=dtype)))


def _run(opt_factory, grads, start=(1.0,), dtype=np.float32):
    """Parameter values after each step, with the gradients given (one list entry per step)."""
    p = _param(start, dtype)
    opt = opt_factory([p])
    values = []
    for g in grads:
        p.grad = fn.tensor(np.asarray(g, dtype=dtype))
        opt.step()
        values.append(p._data.tolist())
    return values


# -- updates by hand -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, expected", [
    (dict(lr=0.1), [0.9, 0.8]),
    (dict(lr=0.1, momentum=0.9), [0.9, 0.71]),  # b = 1, then 0.9 + 1 = 1.9
    (dict(lr=0.1, momentum=0.9, nesterov=True), [0.81, 0.539]),  # d = 1 + 0.9 * 1, then 1 + 0.9 * 1.9
    (dict(lr=0.1, momentum=0.9, dampening=0.5), [0.9, 0.76]),  # b = 1, then 0.9 + 0.5
    (dict(lr=0.1, weight_decay=0.1), [0.89, 0.7811]),  # d = 1 + 0.1 p
    (dict(lr=0.1, maximize=True), [1.1, 1.2]),
])
def test_sgd_by_hand(kwargs, expected):
    values = _run(lambda ps: optim.SGD(ps, **kwargs), [[1.0], [1.0]], dtype=np.float64)
    np.testing.assert_allclose([v[0] for v in values], expected, rtol=1e-12)


def test_adam_and_adamw_by_hand():
    # A constant gradient makes every bias-corrected Adam step exactly lr (up to eps).
    values = _run(lambda ps: optim.Adam(ps, lr=0.1), [[1.0], [1.0], [1.0]], dtype=np.float64)
    np.testing.assert_allclose([v[0] for v in values], [0.9, 0.8, 0.7], rtol=1e-7)
    # AdamW first shrinks p by (1 - lr * wd): 1 * 0.99 - 0.1 = 0.89, then 0.89 * 0.99 - 0.1 = 0.7811
    values = _run(lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=0.1), [[1.0], [1.0]], dtype=np.float64)
    np.testing.assert_allclose([v[0] for v in values], [0.89, 0.7811], rtol=1e-7)


def _adam_reference(p, grads, lr, betas, eps, weight_decay, decoupled, amsgrad=False):
    """Adam's update written out plainly, in float64."""
    p = np.array(p, dtype=np.float64)
    m, v, vmax, out = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p), []
    for t, g in enumerate(grads, 1):
        g = np.asarray(g, dtype=np.float64)
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        vmax = np.maximum(vmax, v)
        m_hat, v_hat = m / (1 - betas[0] ** t), (vmax if amsgrad else v) / (1 - betas[1] ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(p.tolist())
    return out


@pytest.mark.parametrize("cls, kwargs", [
    (optim.Adam, dict(lr=0.05, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.0)),
    (optim.Adam, dict(lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)),
    (optim.Adam, dict(lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, amsgrad=True)),
    (optim.AdamW, dict(lr=0.05, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.3)),
])
def test_adam_matches_the_written_out_formula(cls, kwargs):
    grads = [[0.5, -1.0, 2.0], [-0.3, 0.2, 2.0], [1.0, 1.0, -4.0], [0.0, -2.0, 0.1]]
    start = [1.0, -2.0, 0.5]
    ours = _run(lambda ps: cls(ps, **kwargs), grads, start=start, dtype=np.float64)
    expected = _adam_reference(start, grads, kwargs["lr"], kwargs["betas"], kwargs["eps"], kwargs["weight_decay"],
                               decoupled=cls is optim.AdamW, amsgrad=kwargs.get("amsgrad", False))
    np.testing.assert_allclose(ours, expected, rtol=1e-10)


def test_updates_keep_dtype_and_skip_params_without_grad():
    for dtype in (np.float32, np.float64):
        a, b = _param([1.0, 2.0], dtype), _param([3.0], dtype)
        for opt in (optim.SGD([a, b], lr=0.1, momentum=0.9, weight_decay=0.01), optim.Adam([a, b]),
                    optim.AdamW([a, b])):
            a.grad = fn.tensor(np.array([1.0, 1.0], dtype=dtype))
            b.grad = None
            data = a._data
            opt.step()
            assert a._data is data and a.dtype == dtype  # in place, same dtype
            assert b._data.tolist() == [3.0] and b not in opt.state


# -- against PyTorch -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs", [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=1e-3)),
    ("SGD", dict(lr=0.05, momentum=0.9, maximize=True)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=3e-2, betas=(0.9, 0.98), weight_decay=0.2, amsgrad=True)),
    ("RMSprop", dict(lr=1e-2, momentum=0.9, centered=True)),
    ("Adadelta", dict(lr=1.0, weight_decay=1e-3)),
])
def test_optimizers_match_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    shapes = [(5, 4), (4,), (3, 2, 2)]
    starts = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = [_param(s) for s in starts]
    theirs = [torch.tensor(s, requires_grad=True) for s in starts]
    opt = getattr(optim, name)(ours, **kwargs)
    ref = getattr(torch.optim, name)(theirs, foreach=False, **kwargs)
    for _ in range(6):
        for p, t in zip(ours, theirs):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad, t.grad = fn.tensor(g), torch.from_numpy(g.copy())
        opt.step()
        ref.step()
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p._data, t.detach().numpy(), rtol=1e-5, atol=1e-6)


# -- param groups and errors ---------------------------------------------------------------------

def test_param_groups_and_defaults():
    a, b = _param([1.0]), _param([1.0])
    opt = optim.SGD([{"params": a}, {"params": [b], "lr": 0.5, "momentum": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[0]["momentum"] == 0 and opt.param_groups[1]["momentum"] == 0.5
    a.grad, b.grad = fn.tensor([1.0]), fn.tensor([1.0])
    opt.step()
    assert a._data.tolist() == pytest.approx([0.9]) and b._data.tolist() == pytest.approx([0.5])
    c = _param([0.0])
    opt.add_param_group({"params": [c], "lr": 0.2})
    assert opt.param_groups[-1]["momentum"] == 0 and len(opt.param_groups) == 3
    assert "Parameter Group 1" in repr(opt)
    per_group_only = optim.SGD([{"params": [_param([0.0])], "lr": 0.3}])
    assert per_group_only.param_groups[0]["lr"] == 0.3


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.SGD([p]), "required option 'lr'"),
    (lambda p: optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda p: optim.SGD(p, lr=0.1), "single Tensor"),
    (lambda p: optim.SGD({p}, lr=0.1), "not a set"),
    (lambda p: optim.SGD([p, p], lr=0.1), "more than once"),
    (lambda p: optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1), "more than once"),
    (lambda p: optim.SGD([p * 2], lr=0.1), "non-leaf"),
    (lambda p: optim.SGD([("w", p)], lr=0.1), "not named_parameters"),
    (lambda p: optim.SGD([p], lr=-1.0), "lr must be >= 0"),
    (lambda p: optim.SGD([p], lr=0.1, nesterov=True), "nesterov"),
    (lambda p: optim.Adam([p], betas=(0.9, 1.0)), "betas"),
    (lambda p: optim.Adam([p], eps=-1.0), "eps"),
])
def test_optimizer_errors(make, message):
    with pytest.raises(FreenetError, match=message):
        make(_param([1.0]))


def test_zero_grad_and_closure():
    p = _param([2.0])
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with fn.no_grad():  # the closure still records its graph
        loss = opt.step(closure)
    assert loss.item() == 4.0 and p._data.tolist() == [1.0]  # 2 - 0.25 * 4
    opt.zero_grad(set_to_none=False)
    assert p.grad._data.tolist() == [0.0]
    opt.zero_grad()
    assert p.grad is None


# -- optimizer state round trips -----------------------------------------------------------------

def _through_json(state):
    """What saving with safetensors (arrays) + JSON (the rest) and loading back gives."""
    arrays = {f"{i}.{k}": v for i, entry in state["state"].items() for k, v in entry.items()
              if isinstance(v, np.ndarray)}
    plain = json.loads(json.dumps({"state": {i: {k: v for k, v in entry.items() if not isinstance(v, np.ndarray)}
                                             for i, entry in state["state"].items()},
                                   "param_groups": state["param_groups"]}))
    for key, value in arrays.items():
        i, k = key.split(".", 1)
        plain["state"][i][k] = value.copy()
    return plain


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.02}], lr=0.05, momentum=0.9,
                         nesterov=True),
    lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True),
    lambda ps: optim.AdamW([{"params": ps[:1], "weight_decay": 0.0}, {"params": ps[1:]}], lr=0.01,
                           betas=(0.8, 0.9)),
    lambda ps: optim.RMSprop([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.002}], lr=0.01, momentum=0.9,
                             centered=True),
    lambda ps: optim.Adadelta(ps, lr=0.5, weight_decay=0.01),
])
def test_optimizer_state_dict_resume(make):
    rng = np.random.default_rng(1)
    starts = [rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(4).astype(np.float32)]
    grads = [[rng.standard_normal(s.shape).astype(np.float32) for s in starts] for _ in range(6)]

    def steps(ps, opt, gs):
        for g in gs:
            for p, gi in zip(ps, g):
                p.grad = fn.tensor(gi)
            opt.step()

    ps = [_param(s) for s in starts]
    opt = make(ps)
    steps(ps, opt, grads[:3])
    saved = opt.state_dict()
    assert sorted(saved["state"]) == [0, 1]
    assert [g["params"] for g in saved["param_groups"]] in ([[0], [1]], [[0, 1]])
    snapshot = [p._data.copy() for p in ps]
    steps(ps, opt, grads[3:])

    resumed = [_param(s) for s in snapshot]
    opt2 = make(resumed)
    opt2.load_state_dict(_through_json(saved))
    steps(resumed, opt2, grads[3:])
    for p, q in zip(ps, resumed):
        np.testing.assert_array_equal(p._data, q._data)
    # the saved state is a copy: stepping did not change it
    key = next(k for k in ("momentum_buffer", "exp_avg", "square_avg") if k in saved["state"][0])
    assert not np.array_equal(saved["state"][0][key], opt.state[ps[0]][key])


def test_optimizer_load_state_dict_errors():
    a, b = _param([1.0, 2.0]), _param([3.0])
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = fn.tensor([1.0, 1.0]), fn.tensor([1.0])
    opt.step()
    state = opt.state_dict()
    with pytest.raises(FreenetError, match="2 parameters in the state and 1"):
        optim.SGD([a], lr=0.1).load_state_dict(state)
    with pytest.raises(FreenetError, match="1 parameter groups, the optimizer 2"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(state)
    with pytest.raises(FreenetError, match=r"shape \(2,\) in the state, \(3,\)"):
        optim.SGD([_param([0.0, 0.0, 0.0]), _param([0.0])], lr=0.1).load_state_dict(state)
    with pytest.raises(FreenetError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})
    # float state is cast to the parameter's dtype
    c, d = _param([1.0, 2.0], np.float64), _param([3.0], np.float64)
    opt64 = optim.SGD([c, d], lr=0.1, momentum=0.9)
    opt64.load_state_dict(state)
    assert opt64.state[c]["momentum_buffer"].dtype == np.float64


# -- learning-rate schedules ---------------------------------------------------------------------

def _lrs(scheduler, n):
    out = []
    for _ in range(n):
        out.append(scheduler.get_last_lr())
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _sgd(lrs=(1.0,), **kwargs):
    return optim.SGD([{"params": [_param([0.0])], "lr": lr} for lr in lrs], **kwargs)


def test_step_lr_by_hand():
    lrs = _lrs(lr_scheduler.StepLR(_sgd((1.0, 0.1)), step_size=3, gamma=0.5), 8)
    assert [a for a, _ in lrs] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert [b for _, b in lrs] == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025] * 2)


def test_cosine_annealing_by_hand():
    T, eta_min = 7, 0.01
    sched = lr_scheduler.CosineAnnealingLR(_sgd((0.5,)), T_max=T, eta_min=eta_min)
    got = [lr[0] for lr in _lrs(sched, 3 * T + 2)]
    closed = [eta_min + (0.5 - eta_min) * (1 + math.cos(math.pi * t / T)) / 2 for t in range(3 * T + 2)]
    np.testing.assert_allclose(got, closed, rtol=1e-12, atol=1e-15)
    assert got[T] == pytest.approx(eta_min) and got[2 * T] == pytest.approx(0.5)


@pytest.mark.parametrize("strategy", ["cos", "linear"])
def test_one_cycle_by_hand(strategy):
    opt = _sgd((0.0,), momentum=0.9)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10, anneal_strategy=strategy)
    initial, low = 1.0 / 25, 1.0 / 25 / 1e4

    def anneal(a, b, pct):
        return b + (a - b) / 2 * (math.cos(math.pi * pct) + 1) if strategy == "cos" else a + (b - a) * pct

    lrs, momenta = [], []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        momenta.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    # warm-up ends at step 0.3 * 10 - 1 = 2; the anneal runs from step 2 to 9
    expected = [anneal(initial, 1.0, t / 2) for t in range(3)] + [anneal(1.0, low, (t - 2) / 7) for t in range(3, 10)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert lrs[0] == pytest.approx(0.04) and lrs[2] == 1.0 and lrs[9] == pytest.approx(4e-6)
    expected_momenta = [anneal(0.95, 0.85, t / 2) for t in range(3)] + [anneal(0.85, 0.95, (t - 2) / 7)
                                                                        for t in range(3, 10)]
    np.testing.assert_allclose(momenta, expected_momenta, rtol=1e-12)
    assert sched.last_epoch == 10  # total_steps steps are allowed (as in PyTorch), one more is not
    with pytest.raises(FreenetError, match="total_steps is 10"):
        sched.step()


def test_one_cycle_options_and_errors():
    opt = optim.Adam([_param([0.0])], lr=1.0)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, epochs=2, steps_per_epoch=5, three_phase=True)
    assert sched.total_steps == 10 and opt.param_groups[0]["betas"] == (0.95, 0.999)
    plain = _sgd((0.1,))
    lr_scheduler.OneCycleLR(plain, max_lr=0.1, total_steps=5, cycle_momentum=False)
    assert plain.param_groups[0]["momentum"] == 0
    with pytest.raises(FreenetError, match="total_steps, or epochs"):
        lr_scheduler.OneCycleLR(_sgd(), max_lr=0.1)
    with pytest.raises(FreenetError, match="pct_start"):
        lr_scheduler.OneCycleLR(_sgd(), max_lr=0.1, total_steps=5, pct_start=1.5)
    with pytest.raises(FreenetError, match="2 values for 1"):
        lr_scheduler.OneCycleLR(_sgd(), max_lr=[0.1, 0.2], total_steps=5)
    with pytest.raises(FreenetError, match="not an Optimizer"):
        lr_scheduler.StepLR("sgd", step_size=1)


_SCHEDULES = [
    ("StepLR", dict(step_size=4, gamma=0.3), "SGD", dict(momentum=0.9)),
    ("CosineAnnealingLR", dict(T_max=6, eta_min=1e-3), "SGD", {}),
    ("OneCycleLR", dict(max_lr=[0.5, 0.2], total_steps=20), "SGD", dict(momentum=0.9)),
    ("OneCycleLR", dict(max_lr=0.3, total_steps=20, pct_start=0.25, anneal_strategy="linear",
                        three_phase=True), "Adam", {}),
    ("OneCycleLR", dict(max_lr=0.3, total_steps=20, cycle_momentum=False, div_factor=10.0,
                        final_div_factor=100.0), "SGD", {}),
]


def _two_groups(module, name, kwargs, make_param):
    return getattr(module, name)([{"params": [make_param()], "lr": 0.1}, {"params": [make_param()], "lr": 0.02}],
                                 **kwargs)


@pytest.mark.parametrize("name, kwargs, opt_name, opt_kwargs", _SCHEDULES)
def test_schedules_match_torch(name, kwargs, opt_name, opt_kwargs):
    torch = pytest.importorskip("torch")
    ours_opt = _two_groups(optim, opt_name, opt_kwargs, lambda: _param([0.0]))
    ref_opt = _two_groups(torch.optim, opt_name, opt_kwargs, lambda: torch.zeros(1, requires_grad=True))
    ours = getattr(lr_scheduler, name)(ours_opt, **kwargs)
    ref = getattr(torch.optim.lr_scheduler, name)(ref_opt, **kwargs)
    for _ in range(20):
        assert ours.get_last_lr() == pytest.approx(ref.get_last_lr(), rel=1e-12)
        for g, h in zip(ours_opt.param_groups, ref_opt.param_groups):
            for key in ("momentum", "betas"):
                if key in g:
                    assert g[key] == pytest.approx(h[key], rel=1e-12)
        ours_opt.step()
        ref_opt.step()
        ours.step()
        ref.step()


@pytest.mark.parametrize("name, kwargs, opt_name, opt_kwargs", _SCHEDULES)
def test_schedule_state_dict_resume(name, kwargs, opt_name, opt_kwargs):
    def make():
        opt = _two_groups(optim, opt_name, opt_kwargs, lambda: _param([0.0]))
        return opt, getattr(lr_scheduler, name)(opt, **kwargs)

    opt, sched = make()
    _lrs(sched, 7)
    opt_state = opt.state_dict()
    sched_state = json.loads(json.dumps(sched.state_dict()))  # plain data
    expected = _lrs(sched, 8)
    expected_groups = [dict(g, params=None) for g in opt.param_groups]

    opt2, sched2 = make()  # the scheduler first, then the states, as in PyTorch
    opt2.load_state_dict(_through_json(opt_state))
    sched2.load_state_dict(sched_state)
    assert _lrs(sched2, 8) == expected
    assert [dict(g, params=None) for g in opt2.param_groups] == expected_groups


# -- end to end ----------------------------------------------------------------------------------

def test_mlp_learns_a_small_classification_problem():
    fn.manual_seed(0)
    rng = np.random.default_rng(0)
    centers = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    labels = rng.integers(0, 3, size=240)
    x = fn.tensor((centers[labels] + 0.6 * rng.standard_normal((240, 2))).astype(np.float32))
    y = fn.tensor(labels)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=60)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0] and losses[-1] < 0.3
    model.eval()
    with fn.no_grad():
        accuracy = (model(x).argmax(1)._data == labels).mean()
    assert accuracy > 0.9
