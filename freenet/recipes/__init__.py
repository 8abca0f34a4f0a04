"""Built-in training recipes: each builds its model, trains it, and reports what it measured.

A recipe module has ``Recipe`` (its parameters), ``build_model()``, ``train(recipe, ...)``,
``data_identity(recipe)`` and ``LICENSE`` (the default licence of its weights). The image recipes
share their training loop (``loop``) and augmentations (``augment``). Model files name
their recipe; ``freenet reproduce`` looks it up here and nowhere else, so a file never decides
which code is imported.
"""

import importlib

RECIPES = ("mnist", "cifar10", "go")


def get(name):
    if name not in RECIPES:
        from freenet.errors import FreenetError
        raise FreenetError(f"unknown recipe {name!r}; freenet has: {', '.join(RECIPES)}")
    return importlib.import_module(f"freenet.recipes.{name}")
