"""The Go recipes in the form provenance and ``freenet reproduce`` need: the AlphaGo Zero loop
(``kind="selfplay"``) and supervised training on SGF games (``kind="supervised"``), exactly as
``freenet go train`` runs them (freenet/go/train.py)."""

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass

from freenet.recipes.result import Result

LICENSE = "GPL-3.0-or-later"  # as Leela Zero's weights
ARCHITECTURE = "residual policy/value net (shared/bench/workloads.md go9-6x64 shape): conv3x3+BN+ReLU stem, " \
               "B residual blocks, policy head conv1x1 2 + linear, value head conv1x1 1 + linear + tanh; " \
               "optionally an ownership head, a score head and global pooling (the net's freenet.go metadata)"


@dataclass
class Recipe:
    """Everything that decides the weights of a ``freenet go train`` run."""

    kind: str = "selfplay"  # or "supervised"
    generations: int = 10
    data: str = None  # the SGF folder of a supervised run
    data_license: str = None  # the SGF games' licence (SPDX), as the user states it
    config: str = "{}"  # freenet.go.train.TrainConfig as JSON (it nests the self-play settings)

    def __post_init__(self):
        """Records come from files: a hostile one fails here, with a clear message, not deep in training."""
        from freenet.go.board import MAX_SIZE, MIN_SIZE
        from freenet.go.selfplay import SelfPlayConfig
        from freenet.go.train import TrainConfig
        from freenet.validate import FileFormatError, expect, fail, field, parse_json

        where = "go recipe"
        if self.kind not in ("selfplay", "supervised"):
            fail(f"{where}: kind", f"must be 'selfplay' or 'supervised', not {self.kind!r:.60}")
        expect(self.generations, int, f"{where}: generations", lo=0)  # 0: stopped (--cpu-hours) before the first
        expect(self.data, str, f"{where}: data", optional=self.kind == "selfplay")  # supervised: the SGF folder
        expect(self.data_license, str, f"{where}: data_license", optional=True)
        try:
            config = parse_json(expect(self.config, str, f"{where}: config"), f"{where}: config")
        except FileFormatError:
            raise
        except ValueError as e:  # an integer of over 4,300 digits: the json module raises a plain ValueError
            fail(f"{where}: config", f"not valid JSON ({e})")
        _check_fields(expect(config, dict, f"{where}: config"), TrainConfig, f"{where}: config")
        field(config, "size", int, f"{where}: config", lo=MIN_SIZE, hi=MAX_SIZE, default=None)
        _check_fields(config.get("selfplay", {}), SelfPlayConfig, f"{where}: config: selfplay")

    def as_dict(self):
        return asdict(self)

    def train_config(self):
        from freenet.go.train import TrainConfig
        from freenet.errors import FreenetError
        try:
            fields = json.loads(self.config)
            return TrainConfig(**fields)
        except (ValueError, TypeError) as e:
            raise FreenetError(f"go recipe: bad training configuration {self.config!r}: {e}") from None


def _check_fields(values, cls, where):
    """Each entry of the JSON object ``values`` is a field of the dataclass ``cls``, of its type (null where
    the default is None); integers are non-negative and numbers finite."""
    from freenet.validate import expect, fail, preview

    known = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in known:
            fail(where, f"has an unknown setting {preview(key)}")
        f = known[key]
        kind = _KINDS.get(getattr(f.type, "__name__", f.type))
        if kind is not None:  # a field of another type is left to the config class itself
            expect(value, kind, f"{where}: {key}", lo=0 if kind is int else None, optional=f.default is None)


_KINDS = {"int": int, "float": float, "bool": bool, "dict": dict, "str": str, "list": list}


def sgf_files(folder):
    """Relative path -> SHA-256 of every .sgf file under ``folder``."""
    found = {}
    for directory, _, names in os.walk(folder):
        for name in names:
            if name.lower().endswith(".sgf"):
                path = os.path.join(directory, name)
                with open(path, "rb") as f:
                    found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return dict(sorted(found.items()))


def data_identity(recipe):
    if recipe.kind == "selfplay":
        return {"name": "self-play games", "license": LICENSE, "files": {},
                "source": "generated during training by the recorded program, settings and seed "
                          "(freenet go train); the run folder keeps them under games/",
                "preprocessing": "Leela Zero's 18 input planes; a random one of the 8 symmetries per sample"}
    return {"name": f"SGF games in {recipe.data}", "license": recipe.data_license, "files": sgf_files(recipe.data),
            "source": os.path.abspath(recipe.data),
            "preprocessing": "Leela Zero's 18 input planes; policy target the move played, value target the "
                             "result; a random one of the 8 symmetries per sample"}


def run_folder_weights(run_dir):
    from freenet.go.net import load_net
    return load_net(os.path.join(run_dir, "net.safetensors"))


def train(recipe, progress=True, log=print, run_dir=None):
    """Runs the recipe in ``run_dir`` (a fresh temporary folder if None); returns the final net and its hash."""
    from freenet.go.train import selfplay_loop, supervised_loop
    from freenet.serialize import weights_sha256

    config = recipe.train_config()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        folder = run_dir or scratch
        if recipe.kind == "selfplay":
            selfplay_loop(folder, config, recipe.generations, progress=progress, log=log)
        else:
            supervised_loop(folder, config, recipe.data, recipe.generations, progress=progress, log=log)
        net = run_folder_weights(folder)
    return Result(net, None, time.perf_counter() - start, weights_sha256(net.state_dict()), [])


def recipe_of(config, generations, sgf=None, data_license=None):
    """The Recipe of a ``freenet go train`` invocation."""
    return Recipe(kind="supervised" if sgf else "selfplay", generations=generations, data=sgf,
                  data_license=data_license, config=json.dumps(dataclasses.asdict(config), sort_keys=True))
