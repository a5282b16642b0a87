"""Fixtures of the model-spec tests: catalog names and a writable copy of a catalog model."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ckmodel.spec import list_models
from ckmodel.spec.toml_write import dumps


@pytest.fixture(scope="session")
def catalog_raw() -> Callable[[str], dict[str, Any]]:
    """The TOML dictionary of a catalog model, as a fresh deep copy on each call."""
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            cache[name] = tomllib.loads(list_models()[name].read_text(encoding="utf-8"))
        return copy.deepcopy(cache[name])

    return get


@pytest.fixture
def write_model(tmp_path: Path) -> Callable[[dict[str, Any] | str], Path]:
    """Write a model dictionary (or raw TOML text) to ``tmp_path/bad.toml``; return the path."""

    def write(raw: dict[str, Any] | str) -> Path:
        path = tmp_path / "bad.toml"
        path.write_text(raw if isinstance(raw, str) else dumps(raw), encoding="utf-8")
        return path

    return write
