"""Fixtures for the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from ckdata_helpers import EXAMPLE

from ckmodel.data import read_ck
from ckmodel.errors import DataWarning


@pytest.fixture
def write(tmp_path):
    """Write text to a file under tmp_path and return its path."""
    def _write(text: str, name: str = "ck.csv") -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p
    return _write


@pytest.fixture(scope="session")
def example_dir() -> Path:
    return EXAMPLE


@pytest.fixture(scope="session")
def example():
    """The bundled example read once (its HSCT warning is expected)."""
    with pytest.warns(DataWarning, match="after_hsct"):
        return read_ck(EXAMPLE / "ck.csv", outcomes=EXAMPLE / "outcomes.csv")
