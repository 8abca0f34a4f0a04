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
