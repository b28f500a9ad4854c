"""The whole package type-checks: mypy, with the settings of pyproject.toml's [tool.mypy], finds no error.

mypy cannot follow setuptools' package-dir mapping (the top-level folders cli/, onnxsplit/, ... installed as
splitnn.cli, splitnn.onnxsplit, ...), so it runs on a link farm: a `splitnn` folder of symbolic links to the
repository's folders, laid out as the package is installed.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _link_farm(root: Path) -> Path:
    """The installed package's layout under `root`, each part a link to its folder (pyproject's package-dir)."""
    package_dir = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    package = root / "splitnn"
    package.mkdir(parents=True)
    for name, folder in package_dir.items():
        if name == "splitnn":  # the package's own __init__, the only file of its folder
            (package / "__init__.py").symlink_to(REPO / folder / "__init__.py")
        else:  # a subpackage: splitnn.cli -> cli/
            (package / name.removeprefix("splitnn.")).symlink_to(REPO / folder, target_is_directory=True)
    return package


def test_mypy_finds_no_errors(tmp_path: Path) -> None:
    from mypy import api

    package = _link_farm(tmp_path / "farm")
    stdout, stderr, status = api.run([str(package), "--config-file", str(REPO / "pyproject.toml"),
                                      "--cache-dir", str(tmp_path / "mypy-cache")])
    assert status == 0, f"mypy found errors:\n{stdout}{stderr}"
