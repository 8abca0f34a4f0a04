"""exp, log, log1p, expm1, tanh, sigmoid and power whose bits depend only on this file.

The bits must not depend on the CPU or the libm: NumPy picks a SIMD implementation of np.exp and
its kin by CPU (baseline, AVX2, AVX-512), and they round differently; Numba's math.exp calls the
libm (or Intel's SVML). So every function here is computed in float64 from + - * / and exact
operations only (comparisons, rint, 2**n built from its bits), compiled without fastmath: LLVM then
neither reassociates nor fuses a multiply and an add into an FMA, and each operation is one IEEE
rounding on any CPU, at any vector width. The results are within about 1 ulp of float64, so a
float32 result is the exact value rounded once, except in rare near-ties.

Each function takes an array of any shape and strides (float32 and float64 keep their dtype, other
real dtypes give NumPy's float result dtype) and returns a new array, or fills ``out``. The scalar
functions (``exp_f64`` ...) are for other kernels. ``<name>_reference`` is the NumPy twin the
tests hold each function to.
"""

import math

import numpy as np
from numba import njit

from freenet.kernels.parallel import block_ranges, run_blocks

# error_model="numpy": a division by zero gives inf or nan (IEEE), not an exception
_kernel = njit(cache=True, nogil=True, error_model="numpy")
# Scalar functions are inlined where they are used (no call per element), and divide by nothing that
# can be 0: inlined code takes the caller's error model.
_scalar = njit(cache=True, nogil=True, error_model="numpy", inline="always")

# ln 2 in two parts: LN2_HI has 32 significant bits, so n * LN2_HI is exact for |n| < 2**21
LN2_HI = float.fromhex("0x1.62e42fee00000p-1")
LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")  # ln 2 - LN2_HI, rounded
INV_LN2 = 1.4426950408889634  # 1 / ln 2
HALF_LN2 = 0.34657359027997264
SQRT2 = 1.4142135623730951
SMALLEST_NORMAL = 2.2250738585072014e-308
TWO_POW_54 = 18014398509481984.0
TINY = 2.0 ** -54  # below this, log1p(x) and expm1(x) round to x
INF = math.inf
NAN = math.nan

# expm1(r) = r + r*r * (1/2! + r/3! + ... + r**11/13!): for |r| <= ln2 / 2 the first term left out,
# r**14/14!, is below 2**-57
EXPM1_TAYLOR = np.array([1.0 / math.factorial(k) for k in range(2, 14)])
# log(1 + f) = 2 atanh(s) = 2s + s*R with s = f / (2 + f), R = 2s**2/3 + 2s**4/5 + ...: for
# |s| <= 0.172 (f in [sqrt(1/2) - 1, sqrt(2) - 1]) the first term left out, 2s**23/23, is below
# 2**-60 of log(1 + f)
ATANH_SERIES = np.array([2.0 / (2 * k + 1) for k in range(1, 11)])
ATANH_SERIES_AFTER_FIRST = ATANH_SERIES[1:].copy()
TWO_THIRDS, TWO_THIRDS_LO = 2.0 / 3.0, 3.700743415417188e-17  # 2/3 in two parts: 2/3 - TWO_THIRDS, rounded
SPLITTER = 134217729.0  # 2**27 + 1: Veltkamp's split of a float64 into two 26-bit halves


@_scalar
def _pow2(n):
    """2.0 ** n for an integer -1022 <= n <= 1023, from its bits."""
    return np.int64((n + 1023) << 52).view(np.float64)


@_scalar
def _scale(y, n):
    """y * 2**n for y in [2**-64, 2**64] and |n| < 1200, rounded once (to inf, or gradually to 0)."""
    if n > 1023:
        return y * _pow2(1023) * _pow2(n - 1023)
    if n < -1022:
        return y * _pow2(n + 600) * _pow2(-600)  # the first product is exact: one rounding
    return y * _pow2(n)


@_scalar
def horner(c, x):
    """c[0] + c[1] x + c[2] x**2 + ..."""
    acc = c[c.size - 1]
    for k in range(c.size - 2, -1, -1):
        acc = acc * x + c[k]
    return acc


@_scalar
def _two_sum(a, b):
    """s, e with s = a + b rounded and s + e = a + b exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@_scalar
def _expm1_tail(r, c):
    """expm1(r + c) - r for |r| <= ln2/2 + tiny and c a rounding error of r."""
    return r * r * horner(EXPM1_TAYLOR, r) + c


@_scalar
def _plus_expm1(u, r, c):
    """hi, lo with hi + lo = u + expm1(r + c) to about 2**-60 relative, for |u| >= |r|: u + r is
    added exactly (two-sum), then the small rest."""
    s = u + r
    rest = ((u - s) + r) + _expm1_tail(r, c)
    hi = s + rest
    return hi, (s - hi) + rest


@_scalar
def _reduce(hi, lo):
    """n, r, c with hi + lo = n ln2 + r + c, n an integer, |r| <= ln2/2 + tiny, c r's rounding error."""
    n = np.rint((hi + lo) * INV_LN2)
    a = hi - n * LN2_HI  # exact: |a| < 0.5 and both terms are multiples of a's last bit
    r, c = _two_sum(a, lo - n * LN2_LO)
    return int(n), r, c


@_scalar
def exp_sum_f64(hi, lo):
    """exp(hi + lo) for finite hi in [-746, 710] and |lo| small beside |hi| (lo carries bits hi cannot)."""
    n, r, c = _reduce(hi, lo)
    return _scale(_plus_expm1(1.0, r, c)[0], n)


@_scalar
def exp_f64(x):
    if x != x:
        return x
    if x > 710.0:  # exp(709.79) overflows
        return INF
    if x < -746.0:  # exp(-745.14) rounds to 0
        return 0.0
    return exp_sum_f64(x, 0.0)


@_scalar
def exp_square_f64(z, k):
    """exp(k z*z) for k = +-2**j, with z*z in two parts (zh*zh is exact: zh is z cut to 26 bits)."""
    zh = np.int64(np.float64(z).view(np.int64) & ~np.int64((1 << 27) - 1)).view(np.float64)
    hi = k * (zh * zh)
    if not -746.0 <= hi <= 710.0:
        return exp_f64(hi)
    return exp_sum_f64(hi, k * ((z - zh) * (z + zh)))


@_scalar
def _exp_pair(x):
    """hi, lo with hi + lo = exp(x) to about 2**-60 relative, for |x| <= 700."""
    n, r, c = _reduce(x, 0.0)
    hi, lo = _plus_expm1(1.0, r, c)
    return hi * _pow2(n), lo * _pow2(n)


@_scalar
def _expm1_pair(x):
    """hi, lo with hi + lo = expm1(x) to about 2**-60 relative, for x in [2**-54, 36]."""
    if x <= HALF_LN2:
        tail = _expm1_tail(x, 0.0)
        hi = x + tail
        return hi, (x - hi) + tail
    n, r, c = _reduce(x, 0.0)  # 0 <= n <= 52: 2**n (1 + expm1(r)) - 1 = 2**n ((1 - 2**-n) + expm1(r))
    hi, lo = _plus_expm1(1.0 - _pow2(-n), r, c)
    return hi * _pow2(n), lo * _pow2(n)


@_scalar
def expm1_f64(x):
    if x != x:
        return x
    if x > 710.0:
        return INF
    if x < -40.0:  # exp(-40) < 2**-57: -1 + exp(x) rounds to -1
        return -1.0
    if abs(x) < TINY:
        return x
    if abs(x) <= HALF_LN2:
        return x + _expm1_tail(x, 0.0)
    if 0.0 < x <= 36.0:
        return _expm1_pair(x)[0]
    n, r, c = _reduce(x, 0.0)
    if n < 0:  # 2**n (1 + expm1(r)) - 1 = 2**n ((1 - 2**-n) + expm1(r)), 1 - 2**-n exact or nearly
        t = _pow2(n)
        return _plus_expm1((t - 1.0) / t, r, c)[0] * t
    hi, lo = _plus_expm1(1.0, r, c)  # n > 52: 2**n (hi + lo) - 1 = 2**n (hi + (lo - 2**-n))
    return _scale(hi + (lo - _pow2(-min(n, 1022))), n)


@_scalar
def _log1p_reduced(f, k, c):
    """k ln2 + log(1 + f) + c for f in [sqrt(1/2) - 1, sqrt(2) - 1] and a small correction c.

    log(1 + f) = f - (f*f/2 - s (f*f/2 + R)) with s, R as at ATANH_SERIES: k LN2_HI + f is added
    exactly, then the small rest.
    """
    s = f / (2.0 + f)
    z = s * s
    r = z * horner(ATANH_SERIES, z)
    hfsq = 0.5 * f * f
    dk = float(k)
    lead = dk * LN2_HI + f  # two-sum (|k LN2_HI| > |f| unless k = 0): lead + lead_err = k LN2_HI + f
    lead_err = (dk * LN2_HI - lead) + f
    return lead + (lead_err - (hfsq - (s * (hfsq + r) + (dk * LN2_LO + c))))


@_scalar
def _frexp(a):
    """e, m with a = 2**e m, m in [1, 2), for finite a > 0, from the bits."""
    e = 0
    if a < SMALLEST_NORMAL:
        a *= TWO_POW_54
        e = -54
    bits = np.float64(a).view(np.int64)
    m = np.int64((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000).view(np.float64)
    return e + int((bits >> 52) & 0x7FF) - 1023, m


@_scalar
def _split_log(u):
    """e, f with u = 2**e (1 + f), 1 + f in [sqrt(1/2), sqrt(2)), for a positive finite u."""
    e, m = _frexp(u)
    if m > SQRT2:
        m *= 0.5
        e += 1
    return e, m - 1.0  # exact


@_scalar
def log_f64(x):
    if not x > 0.0:
        if x == 0.0:
            return -INF
        return NAN
    if x == INF:
        return x
    e, f = _split_log(x)
    return _log1p_reduced(f, e, 0.0)


@_scalar
def log1p_f64(x):
    if not x > -1.0:
        if x == -1.0:
            return -INF
        return NAN
    if x == INF or abs(x) < TINY:
        return x
    if -0.2928932188134524 < x < 0.41421356237309503:  # 1 + x in (sqrt(1/2), sqrt(2)): f = x exactly
        return _log1p_reduced(x, 0, 0.0)
    u = 1.0 + x
    c = x - (u - 1.0) if x < 1.0 else 1.0 - (u - x)  # u + c = 1 + x exactly
    e, f = _split_log(u)
    return _log1p_reduced(f, e, c / u)  # log(u + c) = log(u) + c/u + O((c/u)**2)


@_scalar
def _ratio(a_hi, a_lo, b_hi, b_lo):
    """(a_hi + a_lo) / (b_hi + b_lo) for small a_lo, b_lo beside a_hi, b_hi (a_hi != 0): the one
    division's rounding, and a first-order correction for the low parts."""
    q = a_hi / b_hi
    return q + q * (a_lo / a_hi - b_lo / b_hi)


@_scalar
def tanh_f64(x):
    if x != x:
        return x
    a = abs(x)
    if a < 2.0 ** -28:  # tanh x = x (1 - x*x/3 + ...) rounds to x
        return x
    if a > 22.0:  # 1 - tanh(22) < 2**-62
        t = 1.0
    elif a > 18.0:  # 2 / (e + 2) < 2**-51: its rounding hardly shows in 1 - 2 / (e + 2)
        t = 1.0 - 2.0 / (expm1_f64(2.0 * a) + 2.0)
    else:
        e_hi, e_lo = _expm1_pair(2.0 * a)  # tanh a = e / (e + 2) = 1 - 2 / (e + 2)
        d_hi, d_lo = _two_sum(e_hi, 2.0)
        d_lo += e_lo
        t = 1.0 - _ratio(2.0, 0.0, d_hi, d_lo) if a > 0.55 else _ratio(e_hi, e_lo, d_hi, d_lo)
    return t if x > 0.0 else -t


@_scalar
def sigmoid_f64(x):
    """1 / (1 + exp(-x)), with no overflow for either sign."""
    if x != x:
        return x
    if x > 40.0:  # exp(-40) < 2**-57: rounds to 1
        return 1.0
    if x < -40.0:  # e / (1 + e) rounds to e = exp(x)
        return exp_f64(x)
    e_hi, e_lo = _exp_pair(-abs(x))
    d_hi, d_lo = _two_sum(1.0, e_hi)
    d_lo += e_lo
    if x >= 0.0:
        return _ratio(1.0, 0.0, d_hi, d_lo)
    return _ratio(e_hi, e_lo, d_hi, d_lo)


@_scalar
def _sign_bit(x):
    return np.float64(x).view(np.int64) < 0


@_scalar
def _two_prod(a, b):
    """p, e with p = a*b rounded and p + e = a*b exactly (Dekker's product with Veltkamp's split
    into 26-bit halves, no FMA), for |a|, |b| < 2**995."""
    p = a * b
    t = SPLITTER * a
    a_hi = t - (t - a)
    t = SPLITTER * b
    b_hi = t - (t - b)
    a_lo, b_lo = a - a_hi, b - b_hi
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


@_scalar
def _mul_pair(a_hi, a_lo, b_hi, b_lo):
    """(a_hi + a_lo)(b_hi + b_lo) as hi + lo (hi the rounded sum), to about 2**-100 relative."""
    p, e = _two_prod(a_hi, b_hi)
    e += a_hi * b_lo + a_lo * b_hi
    hi = p + e
    return hi, (p - hi) + e


@_scalar
def _log_pair(a):
    """hi, lo with hi + lo = log(a) to about 2**-64 relative, for finite a > 0: the terms of
    k ln2 + 2s + s R (see ATANH_SERIES) carried in two parts, R's first term too."""
    k, f = _split_log(a)
    d = 2.0 + f
    d_lo = (2.0 - d) + f  # d + d_lo = 2 + f exactly
    s = f / d
    p, p_lo = _two_prod(s, d)
    s_lo = (((f - p) - p_lo) - s * d_lo) / d  # s + s_lo = f / (2 + f); f - p is exact
    z, z_lo = _two_prod(s, s)
    z_lo += 2.0 * s * s_lo
    t, t_lo = _mul_pair(TWO_THIRDS, TWO_THIRDS_LO, z, z_lo)  # R = 2z/3 + z*z (2/5 + 2z/7 + ...)
    r, r_lo = _two_sum(t, z * z * horner(ATANH_SERIES_AFTER_FIRST, z))
    sr, sr_lo = _mul_pair(s, s_lo, r, r_lo + t_lo)
    dk = float(k)
    a_hi, a_lo = _two_sum(dk * LN2_HI, 2.0 * s)
    b_hi, b_lo = _two_sum(a_hi, sr)
    lo = (a_lo + b_lo) + ((2.0 * s_lo + sr_lo) + dk * LN2_LO)
    hi = b_hi + lo
    return hi, (b_hi - hi) + lo


@_scalar
def _exp_y_log(y, a):
    """exp(y log a) for finite a > 0, with y log a carried in two parts: within about 1 ulp."""
    log_hi, log_lo = _log_pair(a)
    p = y * log_hi
    if not -746.0 <= p <= 710.0:
        return exp_f64(p)
    p, p_lo = _two_prod(y, log_hi)  # |y| < 2**62 here: |log_hi| > 2**-54
    return exp_sum_f64(p, p_lo + y * log_lo)


POWI_MAX = 64  # integer exponents up to this size are done by repeated squaring


@_scalar
def _powi(a, n):
    """a ** n for finite a > 0 and an integer 0 < |n| <= POWI_MAX: the mantissa's power by squaring
    in two parts (exact when the result is a float, else within about 0.5 ulp), scaled by 2**(e n)."""
    e, m = _frexp(a)
    k = abs(n)
    hi, lo = 1.0, 0.0
    base, base_lo = m, 0.0
    while True:
        if k & 1:
            hi, lo = _mul_pair(hi, lo, base, base_lo)
        k >>= 1
        if k == 0:
            break
        base, base_lo = _mul_pair(base, base_lo, base, base_lo)
    if n < 0:  # m ** n in (2**-64, 1]
        hi = _ratio(1.0, 0.0, hi, lo)
    scale = e * n
    if scale > 1100:
        return INF
    if scale < -1200:
        return 0.0
    return _scale(hi, scale)


@_scalar
def power_f64(x, y):
    """x ** y with C99's special cases (as NumPy). Integer y with |y| <= POWI_MAX: by squaring, exact
    when the result is a float; other y: exp(y log|x|) with y log|x| in two parts. Within about
    1 ulp (beyond double rounding where the result is subnormal)."""
    if y == 0.0 or x == 1.0:
        return 1.0
    if x != x or y != y:
        return NAN
    a = abs(x)
    if abs(y) == INF:
        if a == 1.0:
            return 1.0
        return INF if (a < 1.0) == (y < 0.0) else 0.0
    integer = y == np.floor(y)
    odd = integer and abs(y) < 2.0 ** 53 and 0.5 * y != np.floor(0.5 * y)
    if _sign_bit(x) and not integer and a != 0.0 and a != INF:
        return NAN
    if a == 0.0 or a == INF:
        magnitude = INF if (a == 0.0) == (y < 0.0) else 0.0
    elif integer and abs(y) <= POWI_MAX:
        magnitude = _powi(a, int(y))
    else:
        magnitude = _exp_y_log(y, a)
    return -magnitude if odd and _sign_bit(x) else magnitude


# -- on arrays -----------------------------------------------------------------------------------

@_kernel
def _exp_flat(x, out):
    for i in range(x.size):
        out[i] = exp_f64(np.float64(x[i]))


@_kernel
def _expm1_flat(x, out):
    for i in range(x.size):
        out[i] = expm1_f64(np.float64(x[i]))


@_kernel
def _log_flat(x, out):
    for i in range(x.size):
        out[i] = log_f64(np.float64(x[i]))


@_kernel
def _log1p_flat(x, out):
    for i in range(x.size):
        out[i] = log1p_f64(np.float64(x[i]))


@_kernel
def _tanh_flat(x, out):
    for i in range(x.size):
        out[i] = tanh_f64(np.float64(x[i]))


@_kernel
def _sigmoid_flat(x, out):
    for i in range(x.size):
        out[i] = sigmoid_f64(np.float64(x[i]))


@_kernel
def _power_flat(x, y, out):
    for i in range(x.size):
        out[i] = power_f64(np.float64(x[i]), np.float64(y[i]))


_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
BLOCK = 1 << 15  # elements per block of a large array (fixed: block boundaries depend on the size only)


def result_dtype(*arrays):
    """NumPy's result dtype of a float ufunc on these arrays (ints give floats)."""
    dtype = np.result_type(*arrays, np.float16)
    if dtype.kind != "f" or dtype.itemsize > 8:
        raise TypeError(f"freenet.kernels.elementary: unsupported dtype {dtype}")
    return dtype


def run_elementwise(kernel, inputs, out):
    """kernel(*flat inputs, flat out) on C-contiguous arrays of out's shape; blocks for large arrays."""
    dtype = out.dtype if out.dtype in _KERNEL_DTYPES else np.dtype(np.float64)
    inputs = [np.ascontiguousarray(v if v.shape == out.shape else np.broadcast_to(v, out.shape), dtype=dtype)
              .reshape(-1) for v in inputs]
    direct = out.flags.c_contiguous and out.dtype == dtype and not any(np.may_share_memory(v, out) and
                                                                       v.ctypes.data != out.ctypes.data
                                                                       for v in inputs)
    target = out.reshape(-1) if direct else np.empty(out.size, dtype)
    if target.size < 2 * BLOCK:
        kernel(*inputs, target)
    else:
        ranges = block_ranges(target.size, BLOCK)
        run_blocks(lambda i: kernel(*(v[ranges[i][0]:ranges[i][1]] for v in inputs),
                                    target[ranges[i][0]:ranges[i][1]]), len(ranges))
    if not direct:
        out[...] = target.reshape(out.shape)
    return out


def output_array(shape, dtype, out):
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != dtype:
        raise ValueError(f"out must be an ndarray of shape {shape} and dtype {dtype}")
    return out


def unary(kernel, x, out):
    """``kernel`` (a flat loop) over the array ``x`` into ``out`` (or a new array of its result dtype)."""
    x = np.asarray(x)
    return run_elementwise(kernel, [x], output_array(x.shape, result_dtype(x), out))


def exp(x, out=None):
    return unary(_exp_flat, x, out)


def expm1(x, out=None):
    """exp(x) - 1, accurate for small x."""
    return unary(_expm1_flat, x, out)


def log(x, out=None):
    """Natural logarithm: -inf at 0, nan below."""
    return unary(_log_flat, x, out)


def log1p(x, out=None):
    """log(1 + x), accurate for small x."""
    return unary(_log1p_flat, x, out)


def tanh(x, out=None):
    return unary(_tanh_flat, x, out)


def sigmoid(x, out=None):
    """1 / (1 + exp(-x)), without overflow for any x."""
    return unary(_sigmoid_flat, x, out)


def power(x, y, out=None):
    """x ** y elementwise, broadcast (see ``power_f64`` for the method and its accuracy)."""
    x, y = np.asarray(x), np.asarray(y)
    shape = np.broadcast_shapes(x.shape, y.shape)
    return run_elementwise(_power_flat, [x, y], output_array(shape, result_dtype(x, y), out))


# -- NumPy twins ---------------------------------------------------------------------------------

def _twin(f, *arrays):
    dtype = result_dtype(*arrays)
    with np.errstate(all="ignore"):
        return np.asarray(f(*(np.asarray(a, dtype=np.float64) for a in arrays))).astype(dtype)


def exp_reference(x):
    return _twin(np.exp, x)


def expm1_reference(x):
    return _twin(np.expm1, x)


def log_reference(x):
    return _twin(np.log, x)


def log1p_reference(x):
    return _twin(np.log1p, x)


def tanh_reference(x):
    return _twin(np.tanh, x)


def sigmoid_reference(x):
    def stable(v):
        e = np.exp(-np.abs(v))
        return np.where(v >= 0, 1 / (1 + e), e / (1 + e))
    return _twin(stable, x)


def power_reference(x, y):
    return _twin(np.power, x, y)
