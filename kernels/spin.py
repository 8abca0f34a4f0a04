"""Polling a flag without the GIL: how freenet's pool threads hand work over in microseconds.

Waking a sleeping thread (a futex wait) costs tens of microseconds on a virtual machine, as much as a
small kernel's whole run, so freenet's pool threads poll for new work for a short while after each
task before they sleep (as OpenMP runtimes do). ``spin_until`` polls in compiled code without the
GIL, with an acquire load each time (a plain load could be hoisted out of the loop by the compiler),
and yields the core to the OS scheduler every few polls, so that a spinning thread does not keep
another runnable thread (someone else's, or an OpenMP worker) off its core.

``post`` is the other side, a release store, for kernels that hand work over themselves: a thread
that posts a job from inside a GIL-free kernel lets the woken thread take the GIL at once, where a
post from Python would leave it queueing for the GIL (a futex wake-up when the poster lets go).

``stage`` and ``staged`` hand arrays to a thread that stays in compiled code between jobs (a kernel
that serves, see ``parallel.run_kernels``): the arrays' addresses, shapes and strides in a row of an
int64 mailbox, and arrays rebuilt over that memory where they have the shapes and strides of arrays
of the same type that the serving kernel already holds. The rebuilt arrays own nothing: the thread
that staged them keeps them alive until the job is done.
"""

import ctypes
import time

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

YIELD_EVERY = 256  # polls between two sched_yield calls

_sched_yield = types.ExternalFunction("sched_yield", types.int32())  # libc's, by name (so cache=True works)


@intrinsic
def _load_acquire(typingctx, flags, index):
    """flags[index] (an int64 array) read with an atomic acquire load."""
    sig = types.int64(flags, index)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]])
        return builder.load_atomic(pointer, "acquire", 8)

    return sig, codegen


@intrinsic
def _store_release(typingctx, flags, index, value):
    """flags[index] = value (an int64 array) with an atomic release store."""
    sig = types.void(flags, index, value)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]])
        builder.store_atomic(context.cast(builder, args[2], signature.args[2], types.int64), pointer, "release", 8)
        return context.get_dummy_value()

    return sig, codegen


def _post(flags, index, value):
    """flags[index] = value, visible to a thread polling it (nothing when index < 0)."""
    if index >= 0:
        _store_release(flags, index, value)


def _post_python(flags, index, value):
    if index >= 0:
        flags[index] = value


def _spin_until(flags, index, value, polls):
    """Polls flags[index] until it equals ``value`` (True) or ``polls`` polls have passed (False)."""
    for i in range(polls):
        if _load_acquire(flags, index) == value:
            return True
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            _sched_yield()
    return False


def _spin_until_python(flags, index, value, polls):
    """``spin_until`` for NUMBA_DISABLE_JIT=1: Python holds the GIL while it polls, so it polls a few
    times only, letting other threads run in between."""
    for _ in range(min(polls, 16)):
        if flags[index] == value:
            return True
        time.sleep(0)
    return False


def _post_then_spin(flags, out, out_value, index, value, polls):
    """``post(flags, out, out_value)``, then ``spin_until(flags, index, value, polls)``: a pool thread
    says it has finished a job and polls for the next one in one GIL-free call, so that the thread
    waiting for it never finds the GIL held."""
    post(flags, out, out_value)
    return spin_until(flags, index, value, polls)


def serving(helper):
    """The ``post`` argument that asks a kernel that can serve to do so as pool thread ``helper``
    (``parallel.Serve``): -2, -3, ... (0, 1, ... post a job; -1 posts none)."""
    return -2 - helper


def _served_by(post):
    """The pool thread that a ``post`` of ``serving`` names, else -1."""
    return -2 - post if post <= -2 else -1


STAGED_SLOTS = 9  # per staged array: its address, then 4 slots of shape and 4 of strides (up to 4-d)


@intrinsic
def _address(typingctx, array):
    """The address of ``array``'s data, as an int64."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.ptrtoint(data, ir.IntType(64))

    return types.int64(array), codegen


@intrinsic
def _rebase(typingctx, array, address):
    """An array of ``array``'s type, shape and strides over the memory at ``address`` (an int64),
    owning none of it (no meminfo, no parent)."""
    if not isinstance(array, types.Array) or not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        source = context.make_array(array_type)(context, builder, args[0])
        out = context.make_array(array_type)(context, builder)
        at = context.cast(builder, args[1], signature.args[1], types.int64)
        context.populate_array(out, data=builder.inttoptr(at, source.data.type), shape=source.shape,
                               strides=source.strides, itemsize=source.itemsize, meminfo=None)
        return out._getvalue()

    return array(array, address), codegen


def _address_python(array):
    return array.__array_interface__["data"][0]


def _rebase_python(array, address):  # (arrays with strides >= 0, as the staged ones)
    span = array.itemsize + sum((n - 1) * s for n, s in zip(array.shape, array.strides)) if array.size else 0
    buffer = (ctypes.c_char * span).from_address(address)
    return np.ndarray(array.shape, array.dtype, buffer=buffer, strides=array.strides)


def _stage(row, at, array):
    """row[at:at + STAGED_SLOTS] = the address, shape and strides of ``array`` (at most 4-d)."""
    if array.ndim > 4:
        raise ValueError("stage: arrays of at most 4 dimensions")
    row[at] = address(array)
    for d in range(array.ndim):
        row[at + 1 + d] = array.shape[d]
        row[at + 5 + d] = array.strides[d]


def _staged(row, at, like):
    """The array staged at row[at:] (``stage``) as an array of ``like``'s type, or ``like`` itself
    (and False) when its shape or strides are not ``like``'s."""
    for d in range(like.ndim):
        if row[at + 1 + d] != like.shape[d] or row[at + 5 + d] != like.strides[d]:
            return like, False
    return rebase(like, row[at]), True


if numba.config.DISABLE_JIT:
    spin_until, post, post_then_spin = _spin_until_python, _post_python, _post_then_spin
    address, rebase, stage, staged, served_by = _address_python, _rebase_python, _stage, _staged, _served_by
else:
    spin_until = njit(cache=True, nogil=True)(_spin_until)
    post = njit(cache=True, nogil=True)(_post)
    post_then_spin = njit(cache=True, nogil=True)(_post_then_spin)
    address, rebase = _address, _rebase
    stage = njit(cache=True, nogil=True)(_stage)
    staged = njit(cache=True, nogil=True)(_staged)
    served_by = njit(cache=True, nogil=True)(_served_by)
