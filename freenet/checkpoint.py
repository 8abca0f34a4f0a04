"""Crash-safe training checkpoints: everything a run needs to go on as if it had never stopped.

A checkpoint is one safetensors file, written atomically, holding the model's tensors and, in its
metadata, the rest of the training state as JSON (optimizer, scheduler, data-loader position, RNG
state, counters) with its arrays stored as tensors too. A SHA-256 over all of it is kept in the file
and checked on load, so a truncated or corrupted checkpoint is detected; the newest good one is used.
Anything in the folder that is not a regular file (a FIFO, a folder) is reported and skipped too.

A checksum proves that the file is what was written, not that what was written is a usable state:
whoever resumes from ``Checkpoint.state`` checks it before using it (``recipes.loop._resume``,
``go.train._load_or_init`` and the optimizers' and schedulers' ``load_state_dict`` do).

>>> import tempfile, freenet as fn
>>> from freenet.checkpoint import Checkpointer
>>> box = Checkpointer(tempfile.mkdtemp())
>>> path = box.save(3, {"w": fn.ones(2).numpy()}, {"step": 3})
>>> box.latest().state["step"], box.latest().arrays["w"].tolist()
(3, [1.0, 1.0])
"""

import glob
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from freenet.errors import FreenetError
from freenet.serialize import atomic_write, load, load_metadata, to_bytes, weights_sha256
from freenet.validate import FileFormatError, check_regular, parse_json, preview

_STATE_KEY = "freenet.checkpoint.state"
_HASH_KEY = "freenet.checkpoint.sha256"
_PATTERN = "checkpoint-*.safetensors"


def pack(state, arrays, path="state"):
    """``state`` as JSON-able data: each ndarray in it moves to ``arrays`` under its path, leaving a marker."""
    if isinstance(state, np.ndarray):
        arrays[path] = state
        return {"__array__": path}
    if isinstance(state, dict):
        return {str(k): pack(v, arrays, f"{path}.{k}") for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [pack(v, arrays, f"{path}.{i}") for i, v in enumerate(state)]
    if isinstance(state, np.generic):
        return state.item()
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise FreenetError(f"checkpoint: cannot store {type(state).__name__} at {path}")


def unpack(packed, arrays, where="checkpoint"):
    """The inverse of ``pack``; a marker naming no array of ``arrays`` is an error naming ``where``."""
    if isinstance(packed, dict):
        if set(packed) == {"__array__"}:
            key = packed["__array__"]
            if not isinstance(key, str) or key not in arrays:
                raise FileFormatError(f"{where}: array {preview(key)} is missing")
            return arrays[key]
        return {k: unpack(v, arrays, where) for k, v in packed.items()}
    if isinstance(packed, list):
        return [unpack(v, arrays, where) for v in packed]
    return packed


def _digest(arrays, state_json):
    return hashlib.sha256(weights_sha256(arrays).encode() + state_json.encode()).hexdigest()


@dataclass
class Checkpoint:
    path: str
    arrays: dict  # name -> ndarray (the model's tensors and the state's arrays)
    state: dict  # the JSON state with its arrays put back


def read_checkpoint(path):
    """Loads and verifies one checkpoint; a FreenetError says what is wrong with a bad one.

    Verified means: a regular file, its checksum right, its state a JSON object of bounded depth whose
    array markers all name arrays in the file. Whether the state suits a run is the resumer's check.
    """
    path = os.fspath(path)
    check_regular(path)  # a FIFO would block the reads below forever
    metadata = load_metadata(path)
    if _STATE_KEY not in metadata or _HASH_KEY not in metadata:
        raise FreenetError(f"{path}: not a freenet checkpoint (no training state in its metadata)")
    arrays = {name: t.numpy() for name, t in load(path).items()}
    if _digest(arrays, metadata[_STATE_KEY]) != metadata[_HASH_KEY]:
        raise FreenetError(f"{path}: checksum mismatch: the checkpoint is corrupted")
    packed = parse_json(metadata[_STATE_KEY], f"{path}: training state", allow_nonfinite=True)  # NaN losses
    if not isinstance(packed, dict):
        raise FileFormatError(f"{path}: training state is a JSON {type(packed).__name__}, not an object")
    state_arrays = {k: v for k, v in arrays.items() if k.startswith("state.")}
    model_arrays = {k: v for k, v in arrays.items() if not k.startswith("state.")}
    return Checkpoint(path, model_arrays, unpack(packed, state_arrays, path))


class Checkpointer:
    """Writes ``checkpoint-<step>.safetensors`` files into a folder, keeping the newest ``keep``."""

    def __init__(self, directory, keep=2):
        self.directory = os.fspath(directory)
        self.keep = keep

    def paths(self):
        """Checkpoint files, oldest first."""
        return sorted(glob.glob(os.path.join(glob.escape(self.directory), _PATTERN)))

    def prepare(self):
        """Makes the folder and checks that it takes files: a run calls this before its work, not at its
        first checkpoint."""
        try:
            os.makedirs(self.directory, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.directory):
                pass
        except OSError as e:
            raise FreenetError(f"{self.directory}: cannot write checkpoints there ({e.strerror or e})") from None

    def save(self, step, model_arrays, state):
        arrays = {name: np.asarray(a) for name, a in model_arrays.items()}
        if any(name.startswith("state.") for name in arrays):
            raise FreenetError("checkpoint: model tensor names must not start with 'state.'")
        state_json = json.dumps(pack(state, arrays), sort_keys=True)
        metadata = {_STATE_KEY: state_json, _HASH_KEY: _digest(arrays, state_json)}
        path = os.path.join(self.directory, f"checkpoint-{step:09d}.safetensors")
        if os.path.lexists(path) and not os.path.isfile(path):  # a rename cannot replace a folder
            kind = "a folder" if os.path.isdir(path) else "not a regular file"
            raise FreenetError(f"{path}: is {kind}; cannot write a checkpoint there")
        try:
            os.makedirs(self.directory, exist_ok=True)
            atomic_write(path, to_bytes(arrays, metadata))
        except OSError as e:
            raise FreenetError(f"{path}: cannot write the checkpoint ({e.strerror or e})") from None
        # Only files count, and only files go: a folder or FIFO with a checkpoint's name is left alone.
        for old in [p for p in self.paths() if os.path.isfile(p)][:-self.keep]:
            os.remove(old)
        return path

    def latest(self, warn=None):
        """The newest checkpoint that verifies, or None if the folder has none at all.

        Bad ones, and anything with a checkpoint's name that is not a regular file, are reported through
        ``warn`` and skipped; if every one is bad, that is an error.
        """
        paths = self.paths()
        problems = []
        for path in reversed(paths):
            try:
                checkpoint = read_checkpoint(path)
            except (FreenetError, OSError) as e:
                problems.append(str(e))
                if warn is not None:
                    warn(f"skipping a bad checkpoint: {e}")
                continue
            return checkpoint
        if problems:
            raise FreenetError(f"no usable checkpoint in {self.directory}: " + "; ".join(problems))
        return None
