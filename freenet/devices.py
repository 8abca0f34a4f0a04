"""Devices: freenet computes on the CPU only. ``device("cpu")`` and the CUDA/MPS probes that PyTorch scripts
make (``torch.cuda.is_available()``, ``torch.backends.cudnn.deterministic = True``) are answered honestly, so
that a script written for "GPU if there is one" runs here on the CPU; asking for CUDA is an error that says so.
"""

from types import SimpleNamespace

from freenet.errors import FreenetError


class device:
    """A place for tensors, as ``torch.device``: here always the CPU."""

    __slots__ = ("type", "index")

    def __init__(self, type="cpu", index=None):
        if isinstance(type, device):
            type, index = type.type, type.index
        name = str(type)
        if ":" in name:
            name, _, number = name.partition(":")
            index = int(number) if number.isdigit() else number
        if name != "cpu":
            raise FreenetError(f"device: freenet computes on the CPU only; there is no {name!r} device "
                               "(use 'cpu', or torch.cuda.is_available(), which is False here)")
        self.type, self.index = "cpu", index

    def __eq__(self, other):
        try:
            return isinstance(other, (device, str)) and device(other).type == self.type
        except FreenetError:
            return False

    def __hash__(self):
        return hash(self.type)

    def __str__(self):
        return self.type

    def __repr__(self):
        return f"device(type='{self.type}')"


CPU = device("cpu")


def check(where):
    """``None`` or a CPU device (a string or a ``device``); anything else raises FreenetError."""
    if where is not None and not isinstance(where, device):
        device(where)
    return CPU


def _false(*args, **kwargs):
    return False


def _nothing(*args, **kwargs):
    return None


cuda = SimpleNamespace(is_available=_false, device_count=lambda: 0, manual_seed=_nothing, manual_seed_all=_nothing,
                       synchronize=_nothing, empty_cache=_nothing, is_initialized=_false)
backends = SimpleNamespace(cudnn=SimpleNamespace(enabled=False, deterministic=False, benchmark=False,
                                                 is_available=_false),
                           mps=SimpleNamespace(is_available=_false, is_built=_false))
