"""Correctly rounded cos and integer powers of floats, against exact decimal and rational arithmetic."""

import math
import random
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest

from freenet.kernels import correctly_rounded as cr


def _decimal_pi():
    """pi to the context's precision (the recipe of the decimal module's documentation)."""
    with localcontext() as ctx:
        ctx.prec += 2
        lasts, t, s, n, na, d, da = 0, Decimal(3), 3, 1, 0, 0, 24
        while s != lasts:
            lasts = s
            n, na = n + na, na + 8
            d, da = d + da, da + 32
            t = (t * n) / d
            s += t
    return +s


def _cos_exact(x):
    """cos(x) rounded to the nearest float, from 60 significant decimal digits."""
    with localcontext() as ctx:
        ctx.prec = 60 + max(0, int(math.log10(abs(x) + 1)))
        r = Decimal(x) % (2 * _decimal_pi())  # x is exact as a Decimal
        ctx.prec += 2
        i, lasts, s, fact, num, sign = 0, 0, Decimal(1), 1, Decimal(1), 1
        while s != lasts:
            lasts = s
            i += 2
            fact *= i * (i - 1)
            num *= r * r
            sign = -sign
            s += num / fact * sign
        return float(s)


def test_cos_is_correctly_rounded():
    rng = random.Random(0)
    xs = [rng.uniform(-10, 10) for _ in range(2000)]
    xs += [math.pi * t / T for T in (7, 20, 1000) for t in range(0, 3 * T + 2, max(1, T // 50))]
    xs += [math.pi / 2, 3 * math.pi / 2, 1e22, 1e300, 6381956970095103 * 2.0 ** 797, 2.0 ** -26, 0.5, 1.0]
    # where glibc 2.36's cos is 1 ulp off
    xs += [1.1359666151390908, -4.319051085328816, 2.6386375573161582, -8.308691271684967]
    for x in xs:
        assert cr.cos(x) == _cos_exact(x), x
        assert cr.cos(-x) == cr.cos(x)


def test_cos_special_values():
    assert cr.cos(0.0) == cr.cos(-0.0) == cr.cos(5e-324) == 1.0
    assert all(math.isnan(cr.cos(v)) for v in (math.inf, -math.inf, math.nan))


def test_pow_int_is_correctly_rounded():
    rng = random.Random(1)
    cases = [(rng.uniform(-2, 2), rng.randint(-300, 300)) for _ in range(300)]
    cases += [(b, t) for b in (0.9, 0.999, 0.95) for t in (1, 2, 3, 10, 77, 78, 1000, 2000)]  # Adam's beta ** t
    cases += [(rng.uniform(0, 1), rng.randint(78, 3000)) for _ in range(50)]  # past the exact-ints path
    for x, n in cases:
        try:
            exact = float(Fraction(x) ** n)
        except OverflowError:
            exact = math.copysign(math.inf, x) if n % 2 else math.inf
        except ZeroDivisionError:
            continue
        assert cr.pow_int(x, n) == exact, (x, n)


def test_pow_int_limits_and_special_values():
    assert cr.pow_int(0.999, 10**6) == 0.0 and cr.pow_int(-0.5, 1075) == -0.0
    assert cr.pow_int(0.5, 1074) == 5e-324 and cr.pow_int(2.0, 1024) == math.inf
    assert cr.pow_int(-2.0, 1025) == -math.inf and cr.pow_int(2.0, -1074) == 5e-324
    assert cr.pow_int(math.nan, 0) == 1.0 and math.isnan(cr.pow_int(math.nan, 3))
    assert cr.pow_int(-math.inf, 3) == -math.inf and cr.pow_int(0.0, 5) == 0.0
    with pytest.raises(ZeroDivisionError):
        cr.pow_int(0.0, -1)  # as 0.0 ** -1
    with pytest.raises(TypeError):
        cr.pow_int(2.0, 1.5)
