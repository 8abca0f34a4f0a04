"""cos and integer powers of Python floats, correctly rounded, computed with Python ints only.

For the numbers that set a learning rate or a bias correction (a cosine schedule, Adam's beta ** t,
StepLR's gamma ** k): ``math.cos`` and ``float ** int`` call the libm, whose last bit may differ
between libms and between a libm's FMA and non-FMA code. These return the float nearest the exact
value, which is what any correctly rounded libm returns, on every machine.

Both use Ziv's method: a fixed-point computation gives bounds lo <= f(x) <= hi; when lo and hi round
to the same float, that float is the answer, else the precision doubles. The loop ends: cos x is
irrational for x != 0, and a power that is exactly a tie between two floats comes out exactly once
the precision holds all its bits.
"""

import functools
import math
import operator


@functools.lru_cache(maxsize=64)
def _pi_fixed(bits):
    """pi * 2**bits to within 2, by Machin's formula pi = 16 atan(1/5) - 4 atan(1/239)."""
    guard = 32  # the series' truncations add up to far less than 2**32 units of the guarded scale
    one = 1 << (bits + guard)

    def atan_inverse(n):  # atan(1/n) * one = sum (-1)**k / ((2k + 1) n**(2k + 1)) * one
        power = one // n
        total, k, n2 = power, 0, n * n
        while power:
            power //= n2
            k += 1
            total += (-1) ** k * (power // (2 * k + 1))
        return total

    return (16 * atan_inverse(5) - 4 * atan_inverse(239)) >> guard


def _cos_sin_fixed(r, prec, sine):
    """(cos or sin of r / 2**prec) * 2**prec for |r| <= 0.8 * 2**prec, and the number of series terms."""
    r2 = (r * r) >> prec
    term = r if sine else 1 << prec
    total, k, terms = term, 1 if sine else 0, 0
    while term:
        term = ((abs(term) * r2) >> prec) // ((k + 1) * (k + 2)) * (-1 if term > 0 else 1)
        total += term
        k += 2
        terms += 1
    return total, terms


def _cos_bounds(x, prec):
    """lo, hi and a scale: lo / 2**scale <= cos(x) <= hi / 2**scale, for x >= 2**-27."""
    num, den = x.as_integer_ratio()
    prec = max(prec, den.bit_length() + 8)  # x * 2**prec is an integer
    fixed = num << (prec - den.bit_length() + 1)  # x * 2**prec
    extra = max(0, fixed.bit_length() - prec) + 4  # |k| below 2**(extra - 3)
    half_pi = _pi_fixed(prec + extra - 1)  # pi/2 * 2**(prec + extra), error <= 2
    shifted = fixed << extra
    k = (2 * shifted + half_pi) // (2 * half_pi)  # x / (pi/2), rounded
    r = (shifted - k * half_pi) >> extra  # x - k pi/2, to within 1.25 units of 2**-prec
    value, terms = _cos_sin_fixed(r, prec, sine=k % 2 == 1)
    error = 4 * terms + 16  # r's error, r*r's, and each term's two truncations, with room to spare
    if k % 4 in (1, 2):
        value = -value
    return value - error, value + error, prec


def cos(x):
    """cos(x) for a float x, correctly rounded (nan for inf and nan)."""
    x = abs(float(x))
    if not math.isfinite(x):
        return math.nan
    if x < 2.0 ** -27:  # 1 - x*x/2 > 1 - 2**-55: rounds to 1
        return 1.0
    prec = 96
    while True:
        lo, hi, scale = _cos_bounds(x, prec)
        a, b = lo / (1 << scale), hi / (1 << scale)  # int / int: correctly rounded
        if a == b:
            return a
        prec *= 2


def _cut(mantissa, exponent, prec, up):
    """mantissa * 2**exponent cut to at most prec bits of mantissa, rounded down (or up)."""
    extra = mantissa.bit_length() - prec
    if extra <= 0:
        return mantissa, exponent
    kept = mantissa >> extra
    if up and kept << extra != mantissa:
        kept += 1
    return kept, exponent + extra


def _power_bound(m, n, prec, up):
    """(M, E) with M * 2**E <= m**n (up: >=), M of at most prec bits, by squaring; m, n >= 1."""
    result, result_exp = 1, 0
    base, base_exp = _cut(m, 0, prec, up)
    while True:
        if n & 1:
            result, result_exp = _cut(result * base, result_exp + base_exp, prec, up)
        n >>= 1
        if not n:
            return result, result_exp
        base, base_exp = _cut(base * base, 2 * base_exp, prec, up)


def _to_float(mantissa, exponent, reciprocal):
    """mantissa * 2**exponent (or its reciprocal) as the nearest float; inf past the largest."""
    num, den = (mantissa, 1) if exponent >= 0 else (mantissa, 1 << -exponent)
    if exponent > 0:
        num <<= exponent
    if reciprocal:
        num, den = den, num
    try:
        return num / den  # int / int: correctly rounded, gradual underflow included
    except OverflowError:
        return math.inf


def pow_int(x, n):
    """x ** n for a float x and an int n, correctly rounded (inf on overflow, where ``**`` raises)."""
    x, n = float(x), operator.index(n)
    if n == 0 or x == 1.0 or not math.isfinite(x) or x == 0.0:
        return x ** n  # Python's own special cases, no libm
    sign = -1.0 if x < 0 and n % 2 else 1.0
    m, den = abs(x).as_integer_ratio()
    e = 1 - den.bit_length()  # |x| = m * 2**e
    count = abs(n)
    # 2**(m.bit_length() - 1 + e) <= |x| < 2**(m.bit_length() + e): |x| ** n lies between these to the n
    ends = ((m.bit_length() - 1 + e) * n, (m.bit_length() + e) * n)
    if min(ends) > 1030:
        return sign * math.inf
    if max(ends) < -1080:
        return sign * 0.0
    if count * m.bit_length() <= 4096:  # exactly
        return sign * _to_float(m ** count, e * count, reciprocal=n < 0)
    prec = 64 + 2 * count.bit_length()
    while True:
        lo, lo_exp = _power_bound(m, count, prec, up=False)
        hi, hi_exp = _power_bound(m, count, prec, up=True)
        a = _to_float(lo, lo_exp + e * count, reciprocal=n < 0)
        b = _to_float(hi, hi_exp + e * count, reciprocal=n < 0)
        if a == b:
            return sign * a
        prec *= 2
