"""Where the model catalog and the example data sets live, in a checkout and when installed.

The repository's top-level ``models/`` (the catalog TOMLs) and ``data/example_*/`` (the simulated
example trials) are the source of truth. A source checkout or an editable install
(``pip install -e .``) reads them in place. A built wheel carries copies as package data under
``ckmodel/_bundled/`` (``models/`` and ``data/<example>/``), made at build time by ``setup.py``,
and this module finds them with :mod:`importlib.resources`. Code that needs these files asks
this module rather than building paths from ``__file__``.

Examples
--------
>>> from ckmodel.resources import catalog_dir, example_data, list_examples
>>> (catalog_dir() / "expansion_biphasic.toml").is_file()
True
>>> list_examples()
['example_small', 'example_trial']
>>> ck, outcomes = example_data("example_small")
>>> ck.name, outcomes.name
('ck.csv', 'outcomes.csv')
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["catalog_dir", "data_dir", "list_examples", "example_dir", "example_data"]

#: Folder inside the installed package that holds the build-time copies (see ``setup.py``).
BUNDLED = "_bundled"


def _checkout_root() -> Path | None:
    """The repository root when ckmodel runs from a source checkout (editable or not)."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "models").is_dir():
        return root
    return None


def _bundled_root() -> Path | None:
    """``ckmodel/_bundled`` inside the installed package, when the build put it there."""
    where = files("ckmodel") / BUNDLED
    if not isinstance(where, Path):  # a zip import: importlib gives a Traversable, not a folder
        raise FileNotFoundError(
            "ckmodel is imported from a zip archive; the model catalog and example data need "
            "a regular install (pip install ckmodel)")
    return where if where.is_dir() else None


def _find(sub: str, what: str) -> Path:
    """``sub`` under the checkout root, else under the bundled copy; a clear error otherwise."""
    tried = []
    for locate in (_checkout_root, _bundled_root):
        root = locate()
        if root is None:
            continue
        if (root / sub).is_dir():
            return root / sub
        tried.append(str(root / sub))
    where = ", ".join(tried) or f"no source checkout and no {BUNDLED}/ folder in the package"
    raise FileNotFoundError(f"{what} not found (looked in: {where}); reinstall ckmodel from a "
                            "wheel or sdist built with its setup.py, or run from a checkout")


def catalog_dir() -> Path:
    """The folder of the model catalog's TOML files (with its ``README.md``).

    In a source checkout or editable install this is the repository's ``models/``; in an
    installed wheel it is ``ckmodel/_bundled/models``. Folders named in
    ``$CKMODEL_MODELS_PATH`` are searched first by :func:`ckmodel.spec.list_models`, not here.

    Returns
    -------
    pathlib.Path
        An existing folder.

    Raises
    ------
    FileNotFoundError
        When neither the checkout's ``models/`` nor the bundled copy exists.

    Examples
    --------
    >>> sorted(p.stem for p in catalog_dir().glob("*.toml"))[:2]
    ['antigen_driven', 'blood_marrow']
    """
    return _find("models", "the model catalog")


def data_dir() -> Path:
    """The folder that holds the example data sets, one subfolder each.

    In a source checkout this is the repository's ``data/``; in an installed wheel it is
    ``ckmodel/_bundled/data``.

    Returns
    -------
    pathlib.Path
        An existing folder.

    Raises
    ------
    FileNotFoundError
        When neither the checkout's ``data/`` nor the bundled copy exists.

    Examples
    --------
    >>> (data_dir() / "example_trial" / "ck.csv").is_file()
    True
    """
    return _find("data", "the example data folder")


def list_examples() -> list[str]:
    """Names of the example data sets available (folders of :func:`data_dir` with a ``ck.csv``).

    Returns
    -------
    list of str
        Sorted names, e.g. ``['example_small', 'example_trial']``; empty when there is no data
        folder at all.

    Examples
    --------
    >>> "example_trial" in list_examples()
    True
    """
    try:
        root = data_dir()
    except FileNotFoundError:
        return []
    return sorted(d.name for d in root.iterdir() if (d / "ck.csv").is_file())


def example_dir(name: str = "example_trial") -> Path:
    """The folder of one example data set (``ck.csv``, ``outcomes.csv``, ``README.md`` ...).

    Parameters
    ----------
    name : str
        Example name, one of :func:`list_examples` (``"example_trial"``: a simulated phase I,
        30 patients, with outcomes and ``truth.json``; ``"example_small"``: 8 subjects).

    Returns
    -------
    pathlib.Path
        An existing folder that holds at least ``ck.csv``.

    Raises
    ------
    FileNotFoundError
        When there is no such example, naming the ones available and where they were looked for.

    Examples
    --------
    >>> sorted(p.name for p in example_dir("example_small").glob("*.csv"))
    ['ck.csv', 'outcomes.csv']
    """
    root = data_dir()
    folder = root / name
    if not (folder / "ck.csv").is_file():
        have = ", ".join(list_examples()) or "none"
        raise FileNotFoundError(f"no example data set '{name}': {folder / 'ck.csv'} does not "
                                f"exist (available: {have})")
    return folder


def example_data(name: str = "example_trial") -> tuple[Path, Path | None]:
    """The CK file and the outcomes file of one example data set.

    The pair goes straight into :func:`ckmodel.read_ck` and :func:`ckmodel.check_ck`.

    Parameters
    ----------
    name : str
        Example name, one of :func:`list_examples`.

    Returns
    -------
    ck : pathlib.Path
        The NONMEM-style CK file (``ck.csv``).
    outcomes : pathlib.Path or None
        The subject-level outcomes file (``outcomes.csv``), or None when the example has none.

    Raises
    ------
    FileNotFoundError
        When there is no such example (see :func:`example_dir`).

    Examples
    --------
    >>> import warnings
    >>> from ckmodel import read_ck
    >>> ck, outcomes = example_data("example_small")
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     data = read_ck(ck, outcomes=outcomes)
    >>> data.analytes
    ('PB_QPCR', 'BM_QPCR', 'PB_FLOW')
    """
    folder = example_dir(name)
    outcomes = folder / "outcomes.csv"
    return folder / "ck.csv", outcomes if outcomes.is_file() else None
