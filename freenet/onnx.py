"""Export a model to ONNX by tracing: ``freenet.onnx.export(model, example_input, path)``.

The model runs once in eval mode, under ``no_grad``, on ``example_input`` while a tracer is set in
``freenet.errors`` (the ``op`` decorator every op goes through hands it each call). Each outermost op
call becomes ONNX nodes (ops that other ops call inside are not seen); the tensor inputs are matched by
identity to the values already in the graph. A tensor that no traced op produced is a constant: the
model's parameters and buffers become initializers under their module path (``blocks.0.conv1.weight``),
other constants initializers named ``const_K``. In-place methods (``out += identity``, ``x.relu_()``)
tell the tracer (``changed_in_place``) that the tensor now holds the op's output; a tensor changed in
place some other way is an error at its next use rather than a wrong graph.

The first dim of the input is named "batch" and left free: reshapes keep the first dim of their input
where the traced output had the same size there (so ``x.reshape(x.shape[0], -1)`` works at any batch),
and otherwise let it follow from the other dims. What the model's Python code decides from tensor
values (``if x.sum() > 0``), shapes included, is fixed at what it was for ``example_input``. Outputs:
one tensor is "output"; a tuple gives "output0", "output1", ...; a named tuple (the Go nets'
``NetOutput``) its field names, without its None fields. The graph uses ONNX opset 17 and is checked
with ``onnx.checker`` before it is written.

Needs the ``onnx`` package (``pip install "freenet[onnx]"``, which also brings onnxruntime to run it).
"""

import inspect
import sys

import numpy as np

from freenet import errors
from freenet.errors import FreenetError
from freenet.tensor import Tensor, _constant, no_grad

OPSET = 17
_INPLACE_UNSUPPORTED = ("__setitem__", "fill_", "zero_", "uniform_", "normal_")  # their new value is no op's output


def _onnx():
    try:
        import onnx
    except ImportError:
        raise FreenetError('onnx export needs the onnx package: pip install onnx (or pip install "freenet[onnx]")') \
            from None
    return onnx


def export(model, example_input, path=None, input_names=None, output_names=None, opset=OPSET):
    """Traces ``model(example_input)`` and writes it to ``path`` as an ONNX model (returns the ModelProto).

    ``example_input`` is a tensor (or ndarray), or a tuple of them for a model of several inputs; its
    values do not matter, only its shapes and dtypes. ``input_names`` and ``output_names`` replace the
    default names (see the module's doc). Raises a FreenetError naming the op for an op
    that has no ONNX form here."""
    onnx = _onnx()
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    inputs = [_constant(np.array(x._data if isinstance(x, Tensor) else x)) for x in inputs]
    if input_names is None:
        input_names = ["input"] if len(inputs) == 1 else [f"input{i}" for i in range(len(inputs))]
    graph = _Graph(onnx, model)
    for name, x in zip(input_names, inputs):
        graph.add_input(name, x)
    modes = [(m, m.training) for m in model.modules()] if hasattr(model, "modules") else []
    if hasattr(model, "eval"):
        model.eval()
    previous = errors.tracer
    try:
        errors.tracer = graph
        with no_grad():
            result = model(*inputs)
    finally:
        errors.tracer = previous
        for m, mode in modes:
            m.training = mode
    proto = graph.finish(result, opset, output_names)
    onnx.checker.check_model(proto)
    if path is not None:
        try:
            onnx.save(proto, str(path))
        except OSError as e:
            raise FreenetError(f"onnx export: cannot write {path}: {e}") from None
    return proto


class _Graph:
    """The tracer: turns each outermost op call into ONNX nodes as it happens."""

    def __init__(self, onnx, model):
        self.onnx, self.helper = onnx, onnx.helper
        self.depth = self.calls = 0
        self.last = None
        self.values = {}  # id(tensor) -> (value name, version when bound)
        self.arrays = {}  # id(ndarray of a traced tensor) -> value name
        self.keep = []  # every tensor seen, so that no id is reused during the trace
        self.nodes, self.initializers, self.inputs = [], [], []
        self.constants = {}  # id(tensor or ndarray) -> initializer name
        self.counts = {}
        self.batch = None
        self.param_names = {}
        if hasattr(model, "named_parameters"):
            for name, t in list(model.named_parameters()) + list(model.named_buffers()):
                self.param_names[id(t)] = name
                self.param_names[id(t._data)] = name
                self.keep.append(t)

    def changed_in_place(self, t, result, name):
        """``t`` now holds ``result`` (the output of the op just traced), from the in-place method ``name``."""
        if self.depth:  # inside an op: the op's own business
            return
        if result is None or name in _INPLACE_UNSUPPORTED:
            raise FreenetError(f"onnx export: the in-place op '{name}' is not supported")
        self.bind(t, self.value(result))

    # -- names and values ---------------------------------------------------------------------------
    def fresh(self, hint):
        k = self.counts.get(hint, 0)
        self.counts[hint] = k + 1
        return f"{hint}_{k}"

    def add_input(self, name, x):
        if self.batch is None and x.ndim:
            self.batch = x.shape[0]
        dims = ["batch"] + list(x.shape[1:]) if x.ndim else []
        elem = self.helper.np_dtype_to_tensor_dtype(x.dtype)
        self.inputs.append(self.helper.make_tensor_value_info(name, elem, dims))
        self.bind(x, name)

    def bind(self, t, name):
        self.values[id(t)] = (name, t.version)
        self.arrays[id(t._data)] = name  # t.detach() and t.data are new tensors on this same array
        self.keep.append(t)

    def const(self, array, name=None):
        array = np.asarray(array)
        name = name or self.fresh("const")
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def value(self, t, dtype=None):
        """The graph's name for an op input: a traced value, a parameter or other constant tensor, an
        ndarray (a batch norm's running statistics) or a Python number (``dtype``: the number's)."""
        if isinstance(t, Tensor):
            if id(t) in self.values:
                name, version = self.values[id(t)]
                if version != t.version:
                    raise FreenetError("onnx export: a tensor was changed in place by an op the exporter does not "
                                       "follow; use the out-of-place op")
                return name
            if id(t._data) in self.arrays:
                return self.arrays[id(t._data)]
            key, data = id(t), t._data
        elif isinstance(t, np.ndarray):
            key, data = id(t), t
        else:
            data = np.asarray(t, dtype=dtype)
            return self.const(data)
        if key not in self.constants:
            self.constants[key] = self.const(data, self.param_names.get(key))
            self.keep.append(t)
        return self.constants[key]

    def traced(self, t):
        return isinstance(t, Tensor) and id(t) in self.values

    def node(self, op_type, inputs, hint, outputs=1, **attrs):
        names = [self.fresh(hint) for _ in range(outputs)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), names, name=names[0], **attrs))
        return names[0] if outputs == 1 else names

    def ints(self, values):
        return self.const(np.asarray(values, dtype=np.int64))

    # -- the tracer ---------------------------------------------------------------------------------
    def __call__(self, name, fn, args, kwargs):
        if self.depth:
            return fn(*args, **kwargs)
        self.depth = 1
        try:
            out = fn(*args, **kwargs)
        finally:
            self.depth = 0
        self.calls += 1
        self.keep.extend((args, kwargs, out))
        if any(out is v for v in list(args) + list(kwargs.values())):
            self.last = out  # the op returned one of its inputs (cast to the same dtype, eval dropout)
            return out
        convert = _CONVERTERS.get(name)
        if convert is None or not isinstance(out, Tensor):
            values = list(args) + list(kwargs.values())
            if not any(self.traced(v) for v in values + [t for v in values if isinstance(v, (list, tuple)) for t in v]):
                self.last = out  # computed from constants alone: a constant itself
                return out
            raise FreenetError(f"onnx export: the op '{name}' is not supported")
        bound = _signature(fn).bind(*args, **kwargs)
        bound.apply_defaults()
        self.bind(out, convert(self, bound.arguments, out))
        self.last = out
        return out

    # -- the model ----------------------------------------------------------------------------------
    def finish(self, result, opset, output_names=None):
        if isinstance(result, Tensor):
            named = [("output", result)]
        elif isinstance(result, tuple) and hasattr(result, "_fields"):
            named = [(f, v) for f, v in zip(result._fields, result) if v is not None]
        elif isinstance(result, (tuple, list)):
            named = [(f"output{i}", v) for i, v in enumerate(result)]
        else:
            raise FreenetError(f"onnx export: the model returned {type(result).__name__}, not tensors")
        if output_names is not None:
            if len(output_names) != len(named):
                raise FreenetError(f"onnx export: {len(output_names)} output names for {len(named)} outputs")
            named = [(n, t) for n, (_, t) in zip(output_names, named)]
        produced = {out: node for node in self.nodes for out in node.output}
        renames, outputs = {}, []
        for name, t in named:
            if not isinstance(t, Tensor):
                raise FreenetError(f"onnx export: output {name} is {type(t).__name__}, not a tensor")
            source = self.value(t)
            if source in produced and source not in renames:
                renames[source] = name
            else:
                self.nodes.append(self.helper.make_node("Identity", [renames.get(source, source)], [name], name=name))
            dims = [("batch" if i == 0 and n == self.batch else n) for i, n in enumerate(t.shape)]
            outputs.append(self.helper.make_tensor_value_info(name, self.helper.np_dtype_to_tensor_dtype(t.dtype),
                                                              dims))
        for node in self.nodes:
            for field in (node.input, node.output):
                for i, v in enumerate(field):
                    if v in renames:
                        field[i] = renames[v]
        graph = self.helper.make_graph(self.nodes, "freenet", self.inputs, outputs, self.initializers)
        return self.helper.make_model(graph, producer_name="freenet",
                                      opset_imports=[self.helper.make_opsetid("", opset)])


_SIGNATURES = {}


def _signature(fn):
    if fn not in _SIGNATURES:
        _SIGNATURES[fn] = inspect.signature(fn)
    return _SIGNATURES[fn]


# -- converters: (graph, the op's arguments by name, its output) -> the output's value name ------------------
def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def _elementwise(op_type):
    def convert(g, a, out):
        names = []
        for v in (a["a"], a["b"]):
            name = g.value(v, out.dtype)
            if isinstance(v, Tensor) and v.dtype != out.dtype:
                name = g.node("Cast", [name], "cast", to=g.helper.np_dtype_to_tensor_dtype(out.dtype))
            names.append(name)
        return g.node(op_type, names, op_type.lower())
    return convert


def _unary(op_type):
    return lambda g, a, out: g.node(op_type, [g.value(a["x"])], op_type.lower())


def _conv2d(g, a, out):
    w = a["weight"]
    if isinstance(a["padding"], str):
        raise FreenetError(f"onnx export: conv2d padding {a['padding']!r} is not supported")
    ph, pw = _pair(a["padding"])
    inputs = [g.value(a["x"]), g.value(w)] + ([] if a["bias"] is None else [g.value(a["bias"])])
    return g.node("Conv", inputs, "conv", kernel_shape=list(w.shape[2:]), strides=_pair(a["stride"]),
                  pads=[ph, pw, ph, pw], dilations=_pair(a["dilation"]), group=int(a["groups"]))


def _pool(op_type):
    def convert(g, a, out):
        kernel = _pair(a["kernel_size"])
        stride = kernel if a["stride"] is None else _pair(a["stride"])
        ph, pw = _pair(a["padding"])
        attrs = dict(kernel_shape=kernel, strides=stride, pads=[ph, pw, ph, pw])
        if op_type == "MaxPool":
            attrs["dilations"] = _pair(a["dilation"])
        else:
            attrs["count_include_pad"] = int(bool(a["count_include_pad"]))
        return g.node(op_type, [g.value(a["x"])], op_type.lower(), **attrs)
    return convert


def _batch_norm_inputs(g, a):
    if a["training"]:
        raise FreenetError("onnx export: batch norm in training mode (the model is traced in eval mode; "
                           "pass training=False)")
    x, channels = a["x"], a["x"].shape[1]
    scale = g.value(a["weight"]) if a["weight"] is not None else g.const(np.ones(channels, x.dtype))
    shift = g.value(a["bias"]) if a["bias"] is not None else g.const(np.zeros(channels, x.dtype))
    return [g.value(x), scale, shift, g.value(a["running_mean"]), g.value(a["running_var"])]


def _batch_norm(g, a, out):
    return g.node("BatchNormalization", _batch_norm_inputs(g, a), "batch_norm", epsilon=float(a["eps"]))


def _batch_norm_relu(g, a, out):
    y = g.node("BatchNormalization", _batch_norm_inputs(g, a), "batch_norm", epsilon=float(a["eps"]))
    if a["residual"] is not None:
        y = g.node("Add", [y, g.value(a["residual"])], "add")
    return g.node("Relu", [y], "relu")


def _reshape(g, a, out):
    """Reshape to the traced output's shape, the first dim kept (0) or inferred (-1) so the batch is free."""
    x = a["x"]
    shape = list(out.shape)
    if shape and x.ndim:
        shape[0] = 0 if out.shape[0] == x.shape[0] else -1
    return g.node("Reshape", [g.value(x), g.ints(shape)], "reshape")


def _permute(g, a, out):
    dims = a["dims"]
    dims = list(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else list(dims)
    return g.node("Transpose", [g.value(a["x"])], "transpose", perm=[d % a["x"].ndim for d in dims])


def _transpose(g, a, out):
    perm = list(range(a["x"].ndim))
    d0, d1 = a["dim0"] % len(perm), a["dim1"] % len(perm)
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return g.node("Transpose", [g.value(a["x"])], "transpose", perm=perm)


def _axes(dim, ndim):
    if dim is None:
        return list(range(ndim))
    return [d % ndim for d in (dim if isinstance(dim, (tuple, list)) else (dim,))]


def _reduce(op_type):
    def convert(g, a, out):
        x = a["x"]
        axes, keep = _axes(a.get("dim"), x.ndim), int(bool(a.get("keepdim", False)))
        if op_type == "ReduceSum":  # axes is an input from opset 13
            return g.node(op_type, [g.value(x), g.ints(axes)], "reduce_sum", keepdims=keep)
        return g.node(op_type, [g.value(x)], op_type.lower(), axes=axes, keepdims=keep)
    return convert


def _extreme(op_type, pairwise):
    def convert(g, a, out):
        if isinstance(a["dim"], Tensor):
            return g.node(pairwise, [g.value(a["x"]), g.value(a["dim"])], pairwise.lower())
        if a["dim"] is not None:
            raise FreenetError(f"onnx export: {op_type[6:].lower()}(dim=...) (values and indices) is not supported; "
                               f"use a{op_type[6:].lower()}")
        return g.node(op_type, [g.value(a["x"])], op_type.lower(), keepdims=0)
    return convert


def _softmax(op_type):
    def convert(g, a, out):
        return g.node(op_type, [g.value(a["x"])], op_type.lower(), axis=int(a["dim"]) % a["x"].ndim)
    return convert


def _cat(g, a, out):
    tensors = list(a["tensors"])
    axis = a["dim"] % out.ndim
    return g.node("Concat", [g.value(t, out.dtype) for t in tensors], "concat", axis=axis)


def _stack(g, a, out):
    axis = a["dim"] % out.ndim
    parts = [g.node("Unsqueeze", [g.value(t, out.dtype), g.ints([axis])], "unsqueeze") for t in a["tensors"]]
    return g.node("Concat", parts, "concat", axis=axis)


def _getitem(g, a, out):
    """Basic indexing (ints, slices, None, ...) as one Slice and a Reshape; the first dim stays free
    when the index takes all of it."""
    x, index = a["x"], a["index"]
    parts = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(p, (Tensor, np.ndarray, list)) for p in parts):
        raise FreenetError("onnx export: getitem with integer or boolean arrays is not supported (only ints, "
                           "slices, None and ...)")
    if parts.count(Ellipsis) > 1:
        raise FreenetError("onnx export: getitem with two ... is not supported")
    if Ellipsis in parts:
        at = parts.index(Ellipsis)
        rest = x.ndim - sum(p is not None for p in parts if p is not Ellipsis)
        parts[at:at + 1] = [slice(None)] * rest
    starts, ends, axes, steps = [], [], [], []
    dim = 0
    for p in parts:
        if p is None:
            continue
        if isinstance(p, slice):
            if p != slice(None):
                start, stop, step = p.indices(x.shape[dim])
                if step < 0 and stop < 0:
                    stop = -sys.maxsize
                starts.append(start), ends.append(stop), axes.append(dim), steps.append(step)
        else:
            i = int(p) % x.shape[dim]
            starts.append(i), ends.append(i + 1), axes.append(dim), steps.append(1)
        dim += 1
    y = g.value(x)
    if axes:
        y = g.node("Slice", [y, g.ints(starts), g.ints(ends), g.ints(axes), g.ints(steps)], "slice")
    shape = list(out.shape)
    free = x.ndim and 0 not in axes and shape and shape[0] == x.shape[0]
    if shape and x.ndim:
        shape[0] = 0 if free and parts and parts[0] is not None else -1
    if tuple(out.shape) == tuple(x.shape) and not axes:
        return g.node("Identity", [y], "getitem")
    return g.node("Reshape", [y, g.ints(shape)], "reshape")


def _clip(g, a, out):
    inputs = [g.value(a["x"])] + ["" if a[k] is None else g.value(a[k], out.dtype) for k in ("min", "max")]
    while inputs[-1] == "":
        inputs.pop()
    return g.node("Clip", inputs, "clip")


def _cast(g, a, out):
    return g.node("Cast", [g.value(a["x"])], "cast", to=g.helper.np_dtype_to_tensor_dtype(out.dtype))


def _expand(g, a, out):
    x = a["x"]
    lead = out.ndim - x.ndim  # dims the input already has keep their size (1 broadcasts to it)
    shape = [1 if i >= lead and x.shape[i - lead] == n else n for i, n in enumerate(out.shape)]
    return g.node("Expand", [g.value(x), g.ints(shape)], "expand")


def _layer_norm(g, a, out):
    x, k = a["x"], len(_norm_shape(a["normalized_shape"]))
    shape = x.shape[x.ndim - k:]
    scale = g.value(a["weight"]) if a["weight"] is not None else g.const(np.ones(shape, x.dtype))
    inputs = [g.value(x), scale] + ([] if a["bias"] is None else [g.value(a["bias"])])
    return g.node("LayerNormalization", inputs, "layer_norm", axis=-k, epsilon=float(a["eps"]))


def _norm_shape(shape):
    return (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)


def _silu(g, a, out):
    x = g.value(a["x"])
    return g.node("Mul", [x, g.node("Sigmoid", [x], "sigmoid")], "silu")


def _square(g, a, out):
    x = g.value(a["x"])
    return g.node("Mul", [x, x], "square")


def _pad(g, a, out):
    x, pad = a["x"], list(a["pad"])
    begin, end = [0] * x.ndim, [0] * x.ndim
    for i in range(len(pad) // 2):
        begin[x.ndim - 1 - i], end[x.ndim - 1 - i] = pad[2 * i], pad[2 * i + 1]
    value = g.const(np.asarray(a["value"], x.dtype))
    return g.node("Pad", [g.value(x), g.ints(begin + end), value], "pad", mode="constant")


def _where(g, a, out):
    cond = g.value(a["condition"])
    return g.node("Where", [cond, g.value(a["a"], out.dtype), g.value(a["b"], out.dtype)], "where")


def _identity(g, a, out):
    return g.node("Identity", [g.value(a["x"])], "identity")


def _dropout(g, a, out):
    if a["training"] and a["p"]:
        raise FreenetError("onnx export: dropout in training mode (the model is traced in eval mode)")
    return _identity(g, a, out)


def _leaky_relu(g, a, out):
    return g.node("LeakyRelu", [g.value(a["x"])], "leaky_relu", alpha=float(a["negative_slope"]))


def _adaptive_avg_pool2d(g, a, out):
    return g.node("GlobalAveragePool", [g.value(a["x"])], "global_average_pool")


_CONVERTERS = {
    "conv2d": _conv2d, "max_pool2d": _pool("MaxPool"), "avg_pool2d": _pool("AveragePool"),
    "adaptive_avg_pool2d": _adaptive_avg_pool2d,
    "batch_norm": _batch_norm, "batch_norm_relu": _batch_norm_relu, "layer_norm": _layer_norm, "dropout": _dropout,
    "add": _elementwise("Add"), "sub": _elementwise("Sub"), "mul": _elementwise("Mul"), "div": _elementwise("Div"),
    "pow": _elementwise("Pow"), "maximum": _elementwise("Max"), "minimum": _elementwise("Min"), "where": _where,
    "matmul": _elementwise("MatMul"),
    "relu": _unary("Relu"), "tanh": _unary("Tanh"), "sigmoid": _unary("Sigmoid"), "exp": _unary("Exp"),
    "log": _unary("Log"), "neg": _unary("Neg"), "abs": _unary("Abs"), "sqrt": _unary("Sqrt"),
    "leaky_relu": _leaky_relu, "silu": _silu, "square": _square, "clip": _clip, "cast": _cast, "clone": _identity,
    "reshape": _reshape, "flatten": _reshape, "squeeze": _reshape, "unsqueeze": _reshape,
    "transpose": _transpose, "permute": _permute, "expand": _expand, "getitem": _getitem,
    "cat": _cat, "stack": _stack, "pad": _pad,
    "sum": _reduce("ReduceSum"), "mean": _reduce("ReduceMean"), "amax": _reduce("ReduceMax"),
    "amin": _reduce("ReduceMin"), "max": _extreme("ReduceMax", "Max"), "min": _extreme("ReduceMin", "Min"),
    "softmax": _softmax("Softmax"), "log_softmax": _softmax("LogSoftmax"),
}
