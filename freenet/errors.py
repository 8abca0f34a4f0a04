"""The one exception type freenet raises for bad shapes, dtypes or graph misuse."""


class FreenetError(ValueError):
    """A user error: the message names the op and the offending shapes or dtypes."""


def describe(*values):
    """Short text for op inputs in error messages: shapes and dtypes of arrays and tensors."""
    parts = []
    for v in values:
        data = getattr(v, "_data", v)
        shape, dtype = getattr(data, "shape", None), getattr(data, "dtype", None)
        parts.append(f"{tuple(shape)} {dtype}" if shape is not None else type(v).__name__)
    return ", ".join(parts)


# The op tracer (``freenet.onnx`` sets one while it exports a model, and restores None after). When it is
# not None, every op call goes through ``tracer(name, fn, args, kwargs)``, which runs ``fn(*args, **kwargs)``
# and notes the call; when it is None (always, outside an export) ops pay one global lookup.
tracer = None


def op(fn):
    """Turns NumPy's shape, dtype and axis errors inside an op into a FreenetError naming the op and its inputs.

    While ``tracer`` is set, the call goes through it (see above)."""
    name = fn.__name__

    def checked(*args, **kwargs):
        try:
            if tracer is not None:
                return tracer(name, fn, args, kwargs)
            return fn(*args, **kwargs)
        except FreenetError:
            raise
        except (ValueError, IndexError, TypeError) as e:
            raise FreenetError(f"{name}: {e} (inputs: {describe(*args)})") from None

    checked.__name__, checked.__qualname__, checked.__doc__ = name, fn.__qualname__, fn.__doc__
    checked.__wrapped__ = fn
    return checked
