"""Multi-head attention, as PyTorch's ``torch.nn.MultiheadAttention``."""

import math

import numpy as np

from freenet.errors import FreenetError
from freenet.factory import empty, zeros
from freenet.nn import functional as F
from freenet.nn import init
from freenet.nn.layers import Linear
from freenet.nn.module import Module
from freenet.nn.parameter import Parameter
from freenet.ops.shape import cat
from freenet.tensor import Tensor

__all__ = ["MultiheadAttention"]


class NonDynamicallyQuantizableLinear(Linear):
    """A Linear under the name PyTorch gives ``MultiheadAttention.out_proj`` (so the two print alike)."""


def _additive(mask, name, dtype):
    """A bool (True = masked out) or float mask as a float Tensor to add to the scores, or None."""
    if mask is None:
        return None
    array = mask._data if isinstance(mask, Tensor) else np.asarray(mask)
    if array.dtype == np.bool_:
        return Tensor(np.where(array, -np.inf, 0.0).astype(dtype))
    if array.dtype.kind != "f":
        raise FreenetError(f"MultiheadAttention: {name} must be bool or float, not {array.dtype}")
    if isinstance(mask, Tensor) and mask.requires_grad:
        return mask
    return Tensor(array.astype(dtype))


class MultiheadAttention(Module):
    """Attention of ``query`` to ``key``/``value`` in ``num_heads`` heads of ``embed_dim // num_heads``
    dims each (Vaswani et al., 2017), with PyTorch's parameters, initialisation, arguments and shapes.

    The projections are ``in_proj_weight`` (3 embed_dim, embed_dim) and ``in_proj_bias`` (3 embed_dim,),
    or, when ``kdim`` or ``vdim`` differs from ``embed_dim``, ``q_proj_weight``, ``k_proj_weight`` and
    ``v_proj_weight``; then ``out_proj``, a Linear. A state dict loads into PyTorch's module and back.

    ``forward(query, key, value)`` takes (L, N, E) inputs, (N, L, E) with ``batch_first``, or unbatched
    (L, E), and returns ``(output, weights)``: the weights (N, L, S) averaged over the heads, (N, heads,
    L, S) with ``average_attn_weights=False``, or None with ``need_weights=False``. Masks are bool
    (True = masked OUT, unlike ``scaled_dot_product_attention``'s) or float (added to the scores):
    ``key_padding_mask`` (N, S) and ``attn_mask`` (L, S) or (N * heads, L, S). ``is_causal`` is, as in
    PyTorch, a hint that ``attn_mask`` is the causal mask, and needs it. A query whose keys are all
    masked gets NaN weights, or zero output with ``need_weights=False``, as PyTorch's does.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, dtype=None, generator=None):
        super().__init__()
        for name, n in (("embed_dim", embed_dim), ("num_heads", num_heads), ("kdim", kdim), ("vdim", vdim)):
            if n is not None and (not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0):
                raise FreenetError(f"MultiheadAttention: {name} must be a positive int, not {n!r}")
        if embed_dim % num_heads:
            raise FreenetError(f"MultiheadAttention: embed_dim {embed_dim} must be divisible by num_heads "
                               f"{num_heads}")
        if not 0.0 <= dropout < 1.0:
            raise FreenetError(f"MultiheadAttention: dropout must be in [0, 1), not {dropout}")
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.kdim = self.embed_dim if kdim is None else int(kdim)
        self.vdim = self.embed_dim if vdim is None else int(vdim)
        self._qkv_same_embed_dim = self.kdim == self.embed_dim and self.vdim == self.embed_dim
        self.dropout, self.batch_first = dropout, batch_first
        self.head_dim = self.embed_dim // self.num_heads
        dtype = np.float32 if dtype is None else dtype
        e = self.embed_dim
        separate = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(empty(3 * e, e, dtype=dtype))
            for name in separate:
                self.register_parameter(name, None)
        else:
            for name, cols in zip(separate, (e, self.kdim, self.vdim)):
                self.register_parameter(name, Parameter(empty(e, cols, dtype=dtype)))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(empty(3 * e, dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(e, e, bias=bias, dtype=dtype, generator=generator)
        for name in ("bias_k", "bias_v"):
            self.register_parameter(name, Parameter(empty(1, 1, e, dtype=dtype)) if add_bias_kv else None)
        self.add_zero_attn = add_zero_attn
        self._reset_parameters(generator)

    def _reset_parameters(self, generator=None):
        """PyTorch's: xavier-uniform projections, zero biases, xavier-normal bias_k and bias_v (out_proj's
        weight keeps Linear's initialisation)."""
        weights = ((self.in_proj_weight,) if self._qkv_same_embed_dim
                   else (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight))
        for w in weights:
            init.xavier_uniform_(w, generator=generator)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)
        for b in (self.bias_k, self.bias_v):
            if b is not None:
                init.xavier_normal_(b, generator=generator)

    def _check_shapes(self, query, key, value, key_padding_mask, attn_mask):
        """True for batched inputs, False for unbatched ones; an error for shapes that fit neither."""
        batched = query.ndim == 3
        dims = 3 if batched else 2
        if query.ndim not in (2, 3) or key.ndim != dims or value.ndim != dims:
            raise FreenetError(f"MultiheadAttention: query, key and value must all be 3-d (batched) or 2-d "
                               f"(unbatched), got shapes {tuple(query.shape)}, {tuple(key.shape)}, "
                               f"{tuple(value.shape)}")
        for name, t, size in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if t.shape[-1] != size:
                raise FreenetError(f"MultiheadAttention: {name} of shape {tuple(t.shape)} must end in {size}")
        seq = 1 if batched and self.batch_first else 0
        batch = 1 - seq
        if key.shape[:-1] != value.shape[:-1] or (batched and query.shape[batch] != key.shape[batch]):
            raise FreenetError(f"MultiheadAttention: query, key and value of shapes {tuple(query.shape)}, "
                               f"{tuple(key.shape)}, {tuple(value.shape)} do not fit together")
        n = query.shape[batch] if batched else 1
        length, source = query.shape[seq], key.shape[seq]
        if key_padding_mask is not None:
            expected = (n, source) if batched else (source,)
            if tuple(np.shape(key_padding_mask)) != expected:
                raise FreenetError(f"MultiheadAttention: key_padding_mask of shape "
                                   f"{tuple(np.shape(key_padding_mask))} must be {expected}")
        if attn_mask is not None:
            shape = tuple(np.shape(attn_mask))
            if shape not in ((length, source), (n * self.num_heads, length, source)):
                raise FreenetError(f"MultiheadAttention: attn_mask of shape {shape} must be {(length, source)} "
                                   f"or {(n * self.num_heads, length, source)}")
        return batched

    def _project(self, query, key, value):
        e = self.embed_dim
        b = self.in_proj_bias
        biases = (None,) * 3 if b is None else (b[:e], b[e:2 * e], b[2 * e:])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            weights = (w[:e], w[e:2 * e], w[2 * e:])
        else:
            weights = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        return tuple(F.linear(x, w, bias) for x, w, bias in zip((query, key, value), weights, biases))

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        batched = self._check_shapes(query, key, value, key_padding_mask, attn_mask)
        if is_causal and attn_mask is None:
            raise FreenetError("MultiheadAttention: is_causal is a hint that attn_mask is the causal mask; give "
                               "attn_mask too (True above the diagonal)")
        if not batched:  # a batch of one
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        elif not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        n, length, heads, hd = query.shape[0], query.shape[1], self.num_heads, self.head_dim
        padding = _additive(key_padding_mask, "key_padding_mask", query.dtype)
        # PyTorch, given the hint and nothing that needs the mask, attends causally and ignores attn_mask
        causal = is_causal and padding is None and not need_weights
        mask = None if causal else _additive(attn_mask, "attn_mask", query.dtype)
        if mask is not None and mask.ndim == 3:
            mask = mask.reshape(n, heads, length, -1)
        if padding is not None:
            padding = padding.reshape(n, 1, 1, -1)
        q, k, v = self._project(query, key, value)
        if self.bias_k is not None:  # one more key and value, at the end
            k = cat([k, self.bias_k.expand(n, 1, self.embed_dim)], 1)
            v = cat([v, self.bias_v.expand(n, 1, self.embed_dim)], 1)
            mask, padding = (m if m is None else F.pad(m, (0, 1)) for m in (mask, padding))
        q, k, v = (t.reshape(n, -1, heads, hd).transpose(1, 2) for t in (q, k, v))  # (N, heads, L or S, hd)
        if self.add_zero_attn:  # and a zero one after those
            k, v = (cat([t, zeros(n, heads, 1, hd, dtype=t.dtype)], 2) for t in (k, v))
            mask, padding = (m if m is None else F.pad(m, (0, 1)) for m in (mask, padding))
        scores = (q * math.sqrt(1.0 / hd)) @ k.transpose(-2, -1)
        if mask is not None and padding is not None:
            mask = mask + padding
        elif mask is None:
            mask = padding
        if mask is not None:
            scores = mask + scores
        if causal:
            scores = scores.masked_fill(~np.tril(np.ones(scores.shape[-2:], dtype=bool)), -np.inf)
        # a query with every key masked: NaN weights, or zero ones without need_weights (as PyTorch's)
        dead = np.isneginf(scores._data).all(axis=-1, keepdims=True)
        if dead.any():
            scores = scores.masked_fill(dead, 0.0)
        weights = F.softmax(scores, -1)
        if dead.any():
            weights = weights.masked_fill(dead, np.nan if need_weights else 0.0)
        weights = F.dropout(weights, self.dropout, self.training)
        out = (weights @ v).transpose(1, 2).reshape(n, length, self.embed_dim)
        out = self.out_proj(out)
        if not batched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(1)
        return out, (weights if batched else weights.squeeze(0))
