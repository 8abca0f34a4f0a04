"""erf and erfc whose bits depend only on freenet's code (why no libm: see ``elementary.py``).

erf(z) for |z| < 1: its Maclaurin series. erfc(z) for 1/2 <= z < 3: exp(-z*z) erfcx(z), with
erfcx(z) = exp(z*z) erfc(z) by its Taylor series about the nearest centre c of 1/2, 5/8, ..., 3
(|z - c| <= 1/16). The Taylor coefficients follow from erfcx' = 2 z erfcx - 2/sqrt(pi) and the value
at the centre, which comes from the continued fraction

    sqrt(pi) erfcx(z) = 1 / (z + (1/2) / (z + 1 / (z + (3/2) / (z + 2 / (z + ...)))))

used directly for z >= 3 (40 terms: converged to below 2**-60 there). The rest by symmetry:
erf(-z) = -erf(z), erfc(-z) = 2 - erfc(z), erf = 1 - erfc, erfc = 1 - erf. Errors are below about
2 ulp of float64 for erf, 4 ulp for erfc.
"""

import math

import numpy as np
from numba import njit

from freenet.kernels.elementary import exp_square_f64, horner, result_dtype, unary

_kernel = njit(cache=True, nogil=True, error_model="numpy")
_scalar = njit(cache=True, nogil=True, error_model="numpy", inline="always")  # as in elementary.py

TWO_OVER_SQRT_PI = 1.1283791670955126
INV_SQRT_PI = 0.5641895835477563

# erf(z) = 2/sqrt(pi) z (1 - z**2/3 + z**4/10 - ...): terms (-1)**n z**2n / (n! (2n + 1)); for |z| < 1
# the first one left out is below 2**-60
ERF_SERIES = np.array([(-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(19)])

CF_TERMS = 40
TABLE_START, TABLE_STEP, TABLE_END = 0.5, 0.125, 3.0
TAYLOR_TERMS = 13  # about a centre: the first term left out is below 2**-60 of erfcx for |z - c| <= 1/16


def _erfcx_continued_fraction(z, terms):
    t = 0.0
    for k in range(terms, 0, -1):
        t = 0.5 * k / (z + t)
    return INV_SQRT_PI / (z + t)


def _erfcx_taylor_table():
    """Row j: the Taylor coefficients of erfcx about c = TABLE_START + j TABLE_STEP, from its ODE.

    (k + 1) a[k + 1] = 2 c a[k] + 2 a[k - 1] (minus 2/sqrt(pi) for k = 0), a[0] = erfcx(c): the
    continued fraction with 2000 terms has converged for every c >= 1/2.
    """
    rows = []
    for j in range(int((TABLE_END - TABLE_START) / TABLE_STEP) + 1):
        c = TABLE_START + j * TABLE_STEP
        a = [_erfcx_continued_fraction(c, 2000)]
        a.append(2.0 * c * a[0] - TWO_OVER_SQRT_PI)
        for k in range(1, TAYLOR_TERMS - 1):
            a.append((2.0 * c * a[k] + 2.0 * a[k - 1]) / (k + 1))
        rows.append(a)
    return np.array(rows)


ERFCX_TAYLOR = _erfcx_taylor_table()


@_scalar
def _erf_series(z):
    """erf(z) for |z| < 1."""
    return TWO_OVER_SQRT_PI * (z * horner(ERF_SERIES, z * z))


@_scalar
def _erfc_positive(z):
    """erfc(z) for z >= 1/2."""
    if z > 27.3:  # erfc(27.3) < 2**-1075
        return 0.0
    if z < TABLE_END - 0.5 * TABLE_STEP:
        j = int((z - TABLE_START) / TABLE_STEP + 0.5)
        y = horner(ERFCX_TAYLOR[j], z - (TABLE_START + j * TABLE_STEP))  # z - c: exact
    else:
        t = 0.0
        for k in range(CF_TERMS, 0, -1):
            t = 0.5 * k / (z + t)
        y = INV_SQRT_PI / (z + t)
    return exp_square_f64(z, -1.0) * y


@_scalar
def erf_f64(z):
    if z != z:
        return z
    a = abs(z)
    if a < 1.0:
        return _erf_series(z)
    v = 1.0 - _erfc_positive(a)
    return v if z > 0.0 else -v


@_scalar
def erfc_f64(z):
    if z != z:
        return z
    if abs(z) < 0.5:
        return 1.0 - _erf_series(z)
    if z > 0.0:
        return _erfc_positive(z)
    return 2.0 - _erfc_positive(-z)


@_kernel
def _erf_flat(x, out):
    for i in range(x.size):
        out[i] = erf_f64(np.float64(x[i]))


@_kernel
def _erfc_flat(x, out):
    for i in range(x.size):
        out[i] = erfc_f64(np.float64(x[i]))


def erf(x, out=None):
    return unary(_erf_flat, x, out)


def erfc(x, out=None):
    """1 - erf(x), accurate where it is small."""
    return unary(_erfc_flat, x, out)


def erf_reference(x):
    from scipy import special

    return special.erf(np.asarray(x, dtype=np.float64)).astype(result_dtype(np.asarray(x)))


def erfc_reference(x):
    from scipy import special

    return special.erfc(np.asarray(x, dtype=np.float64)).astype(result_dtype(np.asarray(x)))
