"""What PyTorch scripts with renamed imports need from freenet.optim and freenet.nn.init: RMSprop and
Adadelta, the MultiStepLR, ExponentialLR, LambdaLR and ReduceLROnPlateau schedules, trunc_normal_ and
orthogonal_. Every feature is checked by hand (no torch needed); where torch is installed, also
against it (those tests skip themselves otherwise)."""

import json
import math

import numpy as np
import pytest

import test_optim

import freenet as fn
from freenet import FreenetError, optim
from freenet.nn import init
from freenet.optim import lr_scheduler


def _param(values, dtype=np.float64):
    return test_optim._param(values, dtype)


def _run(opt_factory, grads, start=(1.0,), dtype=np.float64):
    return test_optim._run(opt_factory, grads, start, dtype)


# -- RMSprop and Adadelta by hand ------------------------------------------------------------------

SQRT2 = math.sqrt(2.0)


@pytest.mark.parametrize("kwargs, expected", [
    # v = 0.5 * 4 = 2, p = 1 - 0.1 * 2 / sqrt(2); then v = 0.5 * 2 + 0.5 * 1 = 1.5, p -= 0.1 * 1 / sqrt(1.5)
    (dict(), [1 - 0.1 * SQRT2, 1 - 0.1 * SQRT2 - 0.1 / math.sqrt(1.5)]),
    # eps after the square root: 0.2 / (sqrt(2) + 1), not 0.2 / sqrt(2 + 1)
    (dict(eps=1.0), [1 - 0.2 / (SQRT2 + 1), 1 - 0.2 / (SQRT2 + 1) - 0.1 / (math.sqrt(1.5) + 1)]),
    # centered: m = 1, avg = sqrt(2 - 1) = 1; then m = 1 + 0.5 * (1 - 1) = 1, avg = sqrt(1.5 - 1)
    (dict(centered=True), [0.8, 0.8 - 0.1 / math.sqrt(0.5)]),
    # momentum: b = 0.9 * 0 + 2 / sqrt(2); then b = 0.9 * sqrt(2) + 1 / sqrt(1.5)
    (dict(momentum=0.9), [1 - 0.1 * SQRT2, 1 - 0.1 * SQRT2 - 0.1 * (0.9 * SQRT2 + 1 / math.sqrt(1.5))]),
    # weight decay: g = 2 + 0.5 * 1 = 2.5, v = 0.5 * 6.25
    (dict(weight_decay=0.5), [1 - 0.25 / math.sqrt(3.125)]),
    (dict(maximize=True), [1 + 0.1 * SQRT2, 1 + 0.1 * SQRT2 + 0.1 / math.sqrt(1.5)]),
])
def test_rmsprop_two_steps_by_hand(kwargs, expected):
    grads = [[2.0], [1.0]][:len(expected)]
    values = _run(lambda ps: optim.RMSprop(ps, lr=0.1, alpha=0.5, **{"eps": 0.0, **kwargs}), grads)
    np.testing.assert_allclose([v[0] for v in values], expected, rtol=1e-14)


def test_adadelta_two_steps_by_hand():
    # rho = 0.5, eps = 0.25, g = 2: v = 2, d = sqrt(0 + 0.25) / sqrt(2 + 0.25) * 2 = 2/3, u = 0.5 * 4/9
    # g = 1: v = 1.5, d = sqrt(2/9 + 0.25) / sqrt(1.75)
    values = _run(lambda ps: optim.Adadelta(ps, rho=0.5, eps=0.25), [[2.0], [1.0]])
    d2 = math.sqrt(2 / 9 + 0.25) / math.sqrt(1.75)
    np.testing.assert_allclose([v[0] for v in values], [1 / 3, 1 / 3 - d2], rtol=1e-14)
    # lr scales the step; weight decay adds 0.5 * p to g: g = 2.5, v = 3.125, d = 0.5 / sqrt(3.375) * 2.5
    values = _run(lambda ps: optim.Adadelta(ps, lr=0.1, rho=0.5, eps=0.25, weight_decay=0.5), [[2.0]])
    assert values[0][0] == pytest.approx(1 - 0.1 * 0.5 / math.sqrt(3.375) * 2.5, rel=1e-14)


def _rmsprop_reference(p, grads, lr, alpha, eps, weight_decay, momentum, centered):
    """RMSprop written out plainly, in float64."""
    p = np.array(p, dtype=np.float64)
    v, m, b, out = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p), []
    for g in grads:
        g = np.asarray(g, dtype=np.float64) + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        m = alpha * m + (1 - alpha) * g
        avg = np.sqrt(v - m * m if centered else v) + eps
        if momentum > 0:
            b = momentum * b + g / avg
            p = p - lr * b
        else:
            p = p - lr * g / avg
        out.append(p.tolist())
    return out


def _adadelta_reference(p, grads, lr, rho, eps, weight_decay):
    p = np.array(p, dtype=np.float64)
    v, u, out = np.zeros_like(p), np.zeros_like(p), []
    for g in grads:
        g = np.asarray(g, dtype=np.float64) + weight_decay * p
        v = rho * v + (1 - rho) * g * g
        d = np.sqrt(u + eps) / np.sqrt(v + eps) * g
        u = rho * u + (1 - rho) * d * d
        p = p - lr * d
        out.append(p.tolist())
    return out


GRADS = [[0.5, -1.0, 2.0], [-0.3, 0.2, 2.0], [1.0, 1.0, -4.0], [0.0, -2.0, 0.1], [0.7, 0.3, -0.2]]
START = [1.0, -2.0, 0.5]


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False),
    dict(lr=0.05, alpha=0.9, eps=1e-3, weight_decay=0.1, momentum=0.0, centered=True),
    dict(lr=0.02, alpha=0.8, eps=1e-6, weight_decay=0.0, momentum=0.9, centered=False),
    dict(lr=0.02, alpha=0.3, eps=1e-6, weight_decay=0.01, momentum=0.5, centered=True),  # lerp's other branch
])
def test_rmsprop_matches_the_written_out_formula(kwargs):
    ours = _run(lambda ps: optim.RMSprop(ps, **kwargs), GRADS, start=START)
    np.testing.assert_allclose(ours, _rmsprop_reference(START, GRADS, **kwargs), rtol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0),
                                    dict(lr=0.5, rho=0.5, eps=1e-3, weight_decay=0.2)])
def test_adadelta_matches_the_written_out_formula(kwargs):
    ours = _run(lambda ps: optim.Adadelta(ps, **kwargs), GRADS, start=START)
    np.testing.assert_allclose(ours, _adadelta_reference(START, GRADS, **kwargs), rtol=1e-12)


def test_state_dtype_groups_and_skipped_params():
    for dtype in (np.float32, np.float64):
        a, b = _param([1.0, 2.0], dtype), _param([3.0], dtype)
        for opt in (optim.RMSprop([a, b], momentum=0.9, centered=True, weight_decay=0.01),
                    optim.Adadelta([a, b], weight_decay=0.01)):
            a.grad, b.grad = fn.tensor(np.array([1.0, -1.0], dtype=dtype)), None
            data = a._data
            opt.step()
            opt.step()
            assert a._data is data and a.dtype == dtype
            assert b._data.tolist() == [3.0] and b not in opt.state
            assert opt.state[a]["step"] == 2 and all(v.dtype == dtype for k, v in opt.state[a].items() if k != "step")
    assert sorted(optim.RMSprop([a], momentum=0.5, centered=True).defaults) == [
        "alpha", "centered", "eps", "lr", "maximize", "momentum", "weight_decay"]
    assert sorted(opt.state[a]) == ["acc_delta", "square_avg", "step"]
    # per-group options: the second group takes a bigger step
    c, d = _param([0.0]), _param([0.0])
    opt = optim.RMSprop([{"params": [c]}, {"params": [d], "lr": 0.1}], lr=0.01, alpha=0.5, eps=0.0)
    c.grad, d.grad = fn.tensor([1.0]), fn.tensor([1.0])
    opt.step()
    assert c.item() == pytest.approx(-0.01 * SQRT2) and d.item() == pytest.approx(-0.1 * SQRT2)


@pytest.mark.parametrize("make, message", [
    (lambda p: optim.RMSprop([p], lr=-1.0), "lr must be >= 0"),
    (lambda p: optim.RMSprop([p], alpha=-0.1), "alpha must be >= 0"),
    (lambda p: optim.RMSprop([p], momentum=-0.5), "momentum must be >= 0"),
    (lambda p: optim.RMSprop([p], eps=-1e-8), "eps must be >= 0"),
    (lambda p: optim.Adadelta([p], rho=1.5), "rho must be in"),
    (lambda p: optim.Adadelta([p], weight_decay=-1.0), "weight_decay must be >= 0"),
])
def test_optimizer_errors(make, message):
    with pytest.raises(FreenetError, match=message):
        make(_param([1.0]))


# -- against torch.optim -------------------------------------------------------------------------

def _quadratic(seed=0):
    """A small least-squares problem: the gradient of 0.5 |A p - y|^2 is A^T (A p - y)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((8, 5)), rng.standard_normal(8), rng.standard_normal(5)


@pytest.mark.parametrize("name, kwargs", [
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-4, weight_decay=0.05)),
    ("RMSprop", dict(lr=0.005, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, alpha=0.4, momentum=0.5, centered=True, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, maximize=True)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.05)),
    ("Adadelta", dict(lr=2.0, rho=0.95, maximize=True)),
])
def test_trajectories_match_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    A, y, start = _quadratic()
    sign = -1.0 if kwargs.get("maximize") else 1.0  # maximize the negated loss: the same descent
    ours = _param(start)
    theirs = torch.tensor(start, requires_grad=True)
    opt = getattr(optim, name)([ours], **kwargs)
    ref = getattr(torch.optim, name)([theirs], foreach=False, **kwargs)
    for _ in range(20):
        ours.grad = fn.tensor(sign * A.T @ (A @ ours._data - y))
        theirs.grad = torch.from_numpy(sign * A.T @ (A @ theirs.detach().numpy() - y))
        opt.step()
        ref.step()
        np.testing.assert_allclose(ours._data, theirs.detach().numpy(), rtol=1e-6, atol=1e-12)
    assert np.abs(ours._data - start).max() > 1e-3  # it did move


# -- schedules by hand ---------------------------------------------------------------------------

def _sgd(lrs=(1.0,), **kwargs):
    return optim.SGD([{"params": [_param([0.0])], "lr": lr} for lr in lrs], **kwargs)


_lrs = test_optim._lrs


def test_multistep_exponential_and_lambda_by_hand():
    lrs = _lrs(lr_scheduler.MultiStepLR(_sgd((1.0, 0.1)), milestones=[5, 2, 5], gamma=0.5), 7)
    assert [a for a, _ in lrs] == [1.0, 1.0, 0.5, 0.5, 0.5, 0.125, 0.125]  # epoch 5 listed twice: gamma ** 2
    assert [b for _, b in lrs] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.05, 0.0125, 0.0125])
    lrs = _lrs(lr_scheduler.ExponentialLR(_sgd((2.0,)), gamma=0.5), 5)
    assert [a for a, in lrs] == [2.0, 1.0, 0.5, 0.25, 0.125]
    lrs = _lrs(lr_scheduler.LambdaLR(_sgd((1.0, 0.5)), [lambda e: 1 / (e + 1), lambda e: 0.1 * e]), 4)
    assert lrs == [[1.0, 0.0], [0.5, 0.05], [1 / 3, 0.1], [0.25, pytest.approx(0.15)]]


def test_schedules_compose_with_outside_changes():
    # MultiStepLR and ExponentialLR multiply the current lr, as PyTorch's do (LambdaLR sets it)
    opt = _sgd((1.0,))
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.5)
    opt.param_groups[0]["lr"] = 10.0
    sched.step()
    assert sched.get_last_lr() == [5.0]
    lam = lr_scheduler.LambdaLR(_sgd((1.0,)), lambda e: 2.0)
    lam.optimizer.param_groups[0]["lr"] = 10.0
    lam.step()
    assert lam.get_last_lr() == [2.0]


def test_reduce_lr_on_plateau_by_hand():
    opt = _sgd((1.0, 0.01))
    sched = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=1, min_lr=[0.2, 0.0], eps=0.003)
    got = []
    # best 5; 5 is no improvement (bad 1), 5 again (bad 2 > patience: lrs halve, cooldown 1);
    # 5: in cooldown, bad epochs are not counted; 5 (bad 1); 5 (bad 2: lrs halve again); 4: new best;
    # 5, 5: halve again, but the first group stops at min_lr 0.2. The second group goes 0.01 -> 0.005
    # once: 0.0025 would change it by less than eps, so it stays.
    for metric in [5, 5, 5, 5, 5, 5, 4, 5, 5]:
        sched.step(metric)
        got.append(sched.get_last_lr())
    assert got == [[1.0, 0.01], [1.0, 0.01], [0.5, 0.005], [0.5, 0.005], [0.5, 0.005], [0.25, 0.005],
                   [0.25, 0.005], [0.25, 0.005], [0.2, 0.005]]
    sched.step(fn.tensor(3.0))  # a one-element tensor works as a metric
    assert sched.best == 3.0 and sched.last_epoch == 10
    # thresholds: in "min"/"rel" mode, 99.995 is no improvement on 100 with threshold 1e-4
    sched = lr_scheduler.ReduceLROnPlateau(_sgd((1.0,)), patience=0)
    sched.step(100.0)
    sched.step(99.995)
    assert sched.get_last_lr() == [0.1] and sched.best == 100.0
    # "max"/"abs": better means above best + threshold
    sched = lr_scheduler.ReduceLROnPlateau(_sgd((1.0,)), mode="max", threshold_mode="abs", threshold=0.5,
                                           patience=0, min_lr=0.05)
    for metric in [1.0, 1.4, 2.0, 1.9, 1.0]:
        sched.step(metric)
    assert sched.best == 2.0 and sched.get_last_lr() == [0.05]  # 0.1 after 1.4, then 0.01 -> min_lr 0.05


def test_schedule_errors():
    with pytest.raises(FreenetError, match="milestones must be ints"):
        lr_scheduler.MultiStepLR(_sgd(), milestones=[1.5])
    with pytest.raises(FreenetError, match="expected 2 lr_lambdas"):
        lr_scheduler.LambdaLR(_sgd((1.0, 1.0)), [lambda e: 1.0])
    with pytest.raises(FreenetError, match="must be callable"):
        lr_scheduler.LambdaLR(_sgd(), 0.5)
    with pytest.raises(FreenetError, match="factor must be < 1"):
        lr_scheduler.ReduceLROnPlateau(_sgd(), factor=1.0)
    with pytest.raises(FreenetError, match="mode must be 'min' or 'max'"):
        lr_scheduler.ReduceLROnPlateau(_sgd(), mode="lowest")
    with pytest.raises(FreenetError, match="threshold_mode must be 'rel' or 'abs'"):
        lr_scheduler.ReduceLROnPlateau(_sgd(), threshold_mode="relative")
    with pytest.raises(FreenetError, match="expected 2 min_lrs"):
        lr_scheduler.ReduceLROnPlateau(_sgd((1.0, 1.0)), min_lr=[0.1])
    with pytest.raises(FreenetError, match="not an Optimizer"):
        lr_scheduler.ReduceLROnPlateau("sgd")
    with pytest.raises(FreenetError, match="metric must be a number"):
        lr_scheduler.ReduceLROnPlateau(_sgd()).step("low")


class Warmup:
    """A callable object: LambdaLR saves its attributes (a plain function it cannot save)."""

    def __init__(self, steps):
        self.steps = steps

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.steps)


_SCHEDULES = [
    ("MultiStepLR", lambda: dict(milestones=[3, 7, 7, 12], gamma=0.3)),
    ("ExponentialLR", lambda: dict(gamma=0.9)),
    ("LambdaLR", lambda: dict(lr_lambda=lambda e: 0.95 ** e)),
    ("LambdaLR", lambda: dict(lr_lambda=[lambda e: 1 / (1 + e), Warmup(5)])),
]


@pytest.mark.parametrize("name, kwargs", _SCHEDULES)
def test_schedule_state_dict_resume(name, kwargs):
    def make():
        opt = _sgd((0.1, 0.02), momentum=0.9)
        return opt, getattr(lr_scheduler, name)(opt, **kwargs())

    opt, sched = make()
    _lrs(sched, 6)
    opt_state, sched_state = opt.state_dict(), json.loads(json.dumps(sched.state_dict()))  # plain data
    expected = _lrs(sched, 10)
    opt2, sched2 = make()
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    assert _lrs(sched2, 10) == expected


def test_lambda_lr_state_keeps_callable_objects_attributes_only():
    warmup = Warmup(5)
    sched = lr_scheduler.LambdaLR(_sgd((1.0, 1.0)), [lambda e: 1.0, warmup])
    state = sched.state_dict()
    assert state["lr_lambdas"] == [None, {"steps": 5}] and "optimizer" not in state
    state["lr_lambdas"][1]["steps"] = 10
    other = Warmup(5)
    sched2 = lr_scheduler.LambdaLR(_sgd((1.0, 1.0)), [lambda e: 1.0, other])
    sched2.load_state_dict(state)
    assert other.steps == 10 and state["lr_lambdas"] == [None, {"steps": 10}]  # the argument is left as it was


def test_reduce_lr_on_plateau_state_dict_resume():
    metrics = [3.0, 2.0, 2.5, 2.4, 2.3, 2.2, 1.0, 1.5, 1.6, 1.7, 1.8, 1.9]

    def make():
        opt = _sgd((1.0, 0.1))
        return opt, lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=1, cooldown=1)

    opt, sched = make()
    for m in metrics[:5]:
        sched.step(m)
    state = json.loads(json.dumps(sched.state_dict()))  # inf survives Python's JSON (as Infinity)
    opt_state = opt.state_dict()
    expected = []
    for m in metrics[5:]:
        sched.step(m)
        expected.append(sched.get_last_lr())
    opt2, sched2 = make()
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(state)
    got = []
    for m in metrics[5:]:
        sched2.step(m)
        got.append(sched2.get_last_lr())
    assert got == expected and sched2.mode_worse == math.inf


# -- schedules against torch ---------------------------------------------------------------------

def _two_groups(module, make_param):
    return module.SGD([{"params": [make_param()], "lr": 0.1}, {"params": [make_param()], "lr": 0.02}],
                      lr=0.1, momentum=0.9)


@pytest.mark.parametrize("name, kwargs", _SCHEDULES)
def test_schedules_match_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    ours_opt = _two_groups(optim, lambda: _param([0.0]))
    ref_opt = _two_groups(torch.optim, lambda: torch.zeros(1, requires_grad=True))
    ours = getattr(lr_scheduler, name)(ours_opt, **kwargs())
    ref = getattr(torch.optim.lr_scheduler, name)(ref_opt, **kwargs())
    for _ in range(20):
        assert ours.get_last_lr() == pytest.approx(ref.get_last_lr(), rel=1e-12)
        ours_opt.step()
        ref_opt.step()
        ours.step()
        ref.step()


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(patience=1),
    dict(mode="max", patience=2, factor=0.5, threshold=0.01, cooldown=2, min_lr=0.005),
    dict(patience=0, threshold_mode="abs", threshold=0.05, min_lr=[0.01, 0.001], eps=1e-3),
    dict(mode="max", threshold_mode="abs", patience=1, cooldown=1),
])
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours_opt = _two_groups(optim, lambda: _param([0.0]))
    ref_opt = _two_groups(torch.optim, lambda: torch.zeros(1, requires_grad=True))
    ours = lr_scheduler.ReduceLROnPlateau(ours_opt, **kwargs)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, **kwargs)
    metrics = [5, 4, 4.2, 4.1, 4.0, 3.99, 3.999, 4.5, 4.6, 3, 3.1, 3.2, 3.3, 3.4, 2.9, 2.95, 2.96, 2.97] * 2
    changes = 0
    for m in metrics:
        before = ours.get_last_lr()
        ours.step(m)
        ref.step(m)
        assert ours.get_last_lr() == ref.get_last_lr()
        assert (ours.best, ours.num_bad_epochs, ours.cooldown_counter) == (ref.best, ref.num_bad_epochs,
                                                                            ref.cooldown_counter)
        changes += ours.get_last_lr() != before
    assert changes > 0


# -- nn.init.trunc_normal_ -----------------------------------------------------------------------

def _truncnorm_moments(mean, std, a, b):
    """Mean and variance of N(mean, std^2) truncated to [a, b] (finite bounds)."""
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = [math.exp(-x * x / 2) / math.sqrt(2 * math.pi) for x in (alpha, beta)]
    mass = (math.erfc(-beta / SQRT2) - math.erfc(-alpha / SQRT2)) / 2
    mu = (pdf[0] - pdf[1]) / mass
    var = 1 + (alpha * pdf[0] - beta * pdf[1]) / mass - mu * mu
    return mean + std * mu, std * std * var


@pytest.mark.parametrize("mean, std, a, b", [
    (0.0, 1.0, -2.0, 2.0),  # PyTorch's defaults
    (0.0, 0.02, -2.0, 2.0),  # ViT's init: the bounds hardly cut
    (1.0, 2.0, 0.5, 1.2),  # narrow, holding the mean
    (0.0, 1.0, 3.0, 5.0),  # in a tail
    (0.0, 1.0, -6.0, -5.5),  # far in the other tail
    (3.0, 1.0, -1.0, 0.0),  # the mean outside, above
    (0.0, 1.0, 0.1, 3.0),  # one side of the mean, wide
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trunc_normal_bounds_and_moments(mean, std, a, b, dtype):
    fn.manual_seed(0)
    w = init.trunc_normal_(fn.empty(200, 250, dtype=dtype), mean, std, a, b)
    x = w._data
    assert w.dtype == dtype and x.min() >= a and x.max() <= b
    m, v = _truncnorm_moments(mean, std, a, b)
    sd = math.sqrt(v)
    assert abs(x.astype(np.float64).mean() - m) < 5 * sd / math.sqrt(x.size)
    assert abs(x.astype(np.float64).var() / v - 1) < 0.03
    span = min(b, mean + 4 * std) - max(a, mean - 4 * std)
    assert span < 0 or x.max() - x.min() > 0.9 * span  # fills the range (within 4 std of the mean)


def test_trunc_normal_edge_cases():
    fn.manual_seed(0)
    far = init.trunc_normal_(fn.empty(1000, dtype=fn.float64), 0.0, 1.0, 40.0, 41.0)._data
    assert far.min() >= 40.0 and far.max() <= 41.0 and far.mean() == pytest.approx(40.025, abs=3e-3)  # ~a + 1/a
    one_sided = init.trunc_normal_(fn.empty(20000, dtype=fn.float64), 0.5, 1.0, -math.inf, 0.2)._data
    assert one_sided.max() <= 0.2 and np.isfinite(one_sided).all()
    # bounds that float32 cannot hold exactly are still kept: float32(0.1) is above 0.1, so it is out
    # as an upper bound and in as a lower one
    for lo, hi in [(0.1, 0.1000001), (0.0999999, 0.1)]:
        tight = init.trunc_normal_(fn.empty(1000), 0.1, 1.0, lo, hi)._data.astype(np.float64)
        assert tight.min() >= lo and tight.max() <= hi and len(np.unique(tight)) > 3
    assert init.trunc_normal_(fn.empty(3), 0.5, 0.0, 0.0, 0.2).tolist() == pytest.approx([0.2] * 3)
    assert init.trunc_normal_(fn.empty(0, 3)).shape == (0, 3)
    with pytest.raises(FreenetError, match="a < b"):
        init.trunc_normal_(fn.empty(3), a=1.0, b=1.0)
    with pytest.raises(FreenetError, match="std finite and >= 0"):
        init.trunc_normal_(fn.empty(3), std=-1.0)
    with pytest.raises(FreenetError, match="float tensors"):
        init.trunc_normal_(fn.zeros(3, dtype=fn.int64))


def test_trunc_normal_is_seeded():
    def draw(seed, **kw):
        fn.manual_seed(seed)
        return init.trunc_normal_(fn.empty(50, 40), **kw)._data.copy()

    for kw in (dict(), dict(a=1.0, b=1.5)):
        assert np.array_equal(draw(3, **kw), draw(3, **kw)) and not np.array_equal(draw(3, **kw), draw(4, **kw))
    gen = np.random.default_rng(7)
    x = init.trunc_normal_(fn.empty(10), generator=gen)._data.copy()
    assert np.array_equal(x, init.trunc_normal_(fn.empty(10), generator=np.random.default_rng(7))._data)


@pytest.mark.parametrize("mean, std, a, b", [(0.0, 1.0, -2.0, 2.0), (0.5, 2.0, 1.0, 1.5), (0.0, 1.0, 2.0, 4.0)])
def test_trunc_normal_distribution_matches_torch(mean, std, a, b):
    torch = pytest.importorskip("torch")
    from scipy import stats
    fn.manual_seed(0)
    torch.manual_seed(0)
    ours = init.trunc_normal_(fn.empty(20000, dtype=fn.float64), mean, std, a, b)._data
    theirs = torch.nn.init.trunc_normal_(torch.empty(20000, dtype=torch.float64), mean, std, a, b).numpy()
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3


# -- nn.init.orthogonal_ -------------------------------------------------------------------------

def _gram(w, gain):
    m = w.reshape(w.shape[0], -1).astype(np.float64)
    g = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return g / gain ** 2


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4), (4, 2, 3), (6, 2, 2, 2), (1, 7), (7, 1), (70, 50), (40, 90)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_orthogonal_rows_or_columns_are_orthonormal(shape, dtype):
    fn.manual_seed(0)
    w = init.orthogonal_(fn.empty(*shape, dtype=dtype), gain=1.5)
    assert w.shape == shape and w.dtype == dtype
    tol = 5e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(_gram(w._data, 1.5), np.eye(min(shape[0], math.prod(shape[1:]))), atol=tol)


@pytest.mark.parametrize("rows, cols", [(5, 3), (3, 5), (70, 40), (40, 70)])
def test_orthogonal_is_the_sign_fixed_q_of_the_gaussian_draw(rows, cols):
    # PyTorch's recipe: Q of the QR of a standard normal (rows, cols) matrix (of its transpose when
    # rows < cols), with R's diagonal made positive; that makes Q uniformly distributed.
    w = init.orthogonal_(fn.empty(rows, cols, dtype=fn.float64), generator=np.random.default_rng(5))._data
    draw = np.random.default_rng(5).standard_normal((rows, cols))
    q, a = (w, draw) if rows >= cols else (w.T, draw.T)
    r = q.T @ a  # the R of a = q r
    np.testing.assert_allclose(np.tril(r, -1), 0, atol=1e-12)
    assert (np.diag(r) > 0).all()


def test_orthogonal_is_seeded_and_the_same_with_any_thread_count():
    threads = fn.get_num_threads()
    try:
        out = []
        for n in (1, 2, 1):
            fn.set_num_threads(n)
            fn.manual_seed(11)
            out.append(init.orthogonal_(fn.empty(100, 70, dtype=fn.float64))._data.copy())
    finally:
        fn.set_num_threads(threads)
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])
    fn.manual_seed(12)
    assert not np.array_equal(out[0], init.orthogonal_(fn.empty(100, 70, dtype=fn.float64))._data)


def test_orthogonal_errors_and_empty():
    with pytest.raises(FreenetError, match="at least 2 dims"):
        init.orthogonal_(fn.empty(4))
    assert init.orthogonal_(fn.empty(0, 4)).shape == (0, 4)


@pytest.mark.parametrize("rows, cols", [(6, 4), (4, 6), (50, 50)])
def test_orthogonal_matches_torch_on_the_same_draw(rows, cols):
    torch = pytest.importorskip("torch")
    ours = init.orthogonal_(fn.empty(rows, cols, dtype=fn.float64), gain=2.0,
                            generator=np.random.default_rng(3))._data
    flat = torch.from_numpy(np.random.default_rng(3).standard_normal((rows, cols)))
    if rows < cols:
        flat = flat.T
    q, r = torch.linalg.qr(flat)  # torch.nn.init.orthogonal_'s steps, on our draw
    q = q * torch.diag(r, 0).sign()
    if rows < cols:
        q = q.T
    np.testing.assert_allclose(ours, 2.0 * q.numpy(), rtol=1e-6, atol=1e-12)
