"""The code a user reads in README.md and docs/ runs as shown."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", (ROOT / path).read_text(), re.S)


def test_readme_example_runs():
    for block in python_blocks("README.md"):
        exec(compile(block, "README.md", "exec"), {})


def test_mnist_walkthrough_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    script = python_blocks("docs/mnist.md")[0].replace("range(5)", "range(1)")  # one epoch is enough here
    exec(compile(script, "docs/mnist.md", "exec"), {})
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", capsys.readouterr().out).group(1))
    assert accuracy > 0.8
    assert (tmp_path / "mnist-cnn.safetensors").is_file()


def test_engine_guide_examples_run():
    for block in python_blocks("docs/engine.md"):
        exec(compile(block, "docs/engine.md", "exec"), {})


def test_docstring_examples_run():
    """Every ``>>>`` example in freenet's modules (freenet.kernels included) gives the output shown."""
    import doctest
    import importlib
    import pkgutil

    import freenet

    failed, tried = 0, 0
    for info in pkgutil.walk_packages(freenet.__path__, "freenet."):
        if info.name == "freenet.__main__":  # runs the command line on import
            continue
        module = importlib.import_module(info.name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        failed, tried = failed + result.failed, tried + result.attempted
    assert tried > 10 and failed == 0
