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
"""

import time

import numba
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


if numba.config.DISABLE_JIT:
    spin_until, post, post_then_spin = _spin_until_python, _post_python, _post_then_spin
else:
    spin_until = njit(cache=True, nogil=True)(_spin_until)
    post = njit(cache=True, nogil=True)(_post)
    post_then_spin = njit(cache=True, nogil=True)(_post_then_spin)
