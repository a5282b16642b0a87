"""Build hook: copy the model catalog and the example data into the built package.

All metadata lives in ``pyproject.toml``. The repository's top-level ``models/`` and
``data/example_*/`` stay the only copy in git; when a wheel is built (directly or from the sdist,
whose ``MANIFEST.in`` carries both folders) this ``build_py`` copies them into the build tree as
``ckmodel/_bundled/models`` and ``ckmodel/_bundled/data/<example>``, where
``ckmodel.resources`` finds them with :mod:`importlib.resources`. Editable installs copy nothing
and read the repository's folders in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent

#: (source folder glob relative to the repository, file patterns copied from each match).
BUNDLE = (
    ("models", ("*.toml", "README.md")),
    ("data/example_*", ("*.csv", "*.json", "README.md", "make_*.py")),
)


def bundled_files() -> list[tuple[Path, str]]:
    """Every file to bundle, as (source path, destination relative to ``ckmodel/_bundled``)."""
    out = []
    for folder_glob, patterns in BUNDLE:
        for folder in sorted(HERE.glob(folder_glob)):
            if not folder.is_dir():
                continue
            for pattern in patterns:
                for src in sorted(folder.glob(pattern)):
                    if src.is_file():
                        out.append((src, src.relative_to(HERE).as_posix()))
    return out


class BuildPyWithBundle(build_py):
    """``build_py`` that also writes ``ckmodel/_bundled/`` (skipped for editable installs)."""

    def run(self) -> None:
        """Build the package as usual, then copy the catalog and the example data."""
        super().run()
        if getattr(self, "editable_mode", False):
            return
        files = bundled_files()
        if not any(dest.startswith("models/") for _, dest in files):
            raise SystemExit("setup.py: models/*.toml not found; an sdist must carry models/ "
                             "and data/ (see MANIFEST.in)")
        target = Path(self.build_lib) / "ckmodel" / "_bundled"
        if target.exists():
            shutil.rmtree(target)
        for src, dest in files:
            out = target / dest
            out.parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(src), str(out))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        """The usual outputs plus the bundled copies (so ``install --record`` lists them)."""
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            target = Path(self.build_lib) / "ckmodel" / "_bundled"
            outputs += [str(target / dest) for _, dest in bundled_files()]
        return outputs


setup(cmdclass={"build_py": BuildPyWithBundle})
