"""Packaging: what a non-editable install needs, and metadata setuptools takes without warnings."""

import tomllib
from pathlib import Path

import rnncap

ROOT = Path(rnncap.__file__).resolve().parent
PYPROJECT = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())


def test_every_package_data_file_is_installed_by_pyproject():
    """A non-editable install copies only the package data pyproject names: the report's
    template (and every other non-Python file in the packages) must match its globs."""
    import fnmatch

    root = ROOT
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]
    data_files = [p for p in root.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
                  and "__pycache__" not in p.parts]
    assert root / "templates" / "report.html" in data_files
    for path in data_files:
        package = next(d for d in path.parents if (d / "__init__.py").is_file())  # innermost
        name = ".".join(package.relative_to(root.parent).parts)
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, g) for g in globs.get(name, [])), (name, relative)


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it():
    """`license = {text = ...}` makes setuptools >= 77 warn on every build; the SPDX string
    form needs setuptools >= 77 to build."""
    assert PYPROJECT["project"]["license"] == "MIT"
    assert "setuptools>=77" in PYPROJECT["build-system"]["requires"][0]
