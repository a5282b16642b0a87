"""The installable product: a wheel built from the sdist carries the model catalog and the
example data, and an install of it works outside the source checkout.

Mirrors ``ckmodel/resources.py`` and the build hook in ``setup.py``. The wheel is built once per
module (``python -m build``: sdist, then a wheel from the unpacked sdist, so ``MANIFEST.in`` is
exercised too), installed with ``pip install --target`` into a temporary folder and run from
another temporary folder with only that folder on ``PYTHONPATH``. About 10 s in all.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from ckmodel import resources
from ckmodel.spec import list_models

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted(p.stem for p in (ROOT / "models").glob("*.toml"))
EXAMPLES = sorted(d.name for d in (ROOT / "data").glob("example_*") if (d / "ck.csv").is_file())
#: Files of each example that the wheel must carry (when the checkout has them).
EXAMPLE_FILES = ("ck.csv", "outcomes.csv", "truth.json", "README.md")


def _check(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert out.returncode == 0, (f"{' '.join(cmd)} failed ({out.returncode}):\n"
                                 f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """sdist and wheel of the working tree, and the wheel installed under ``site``."""
    if importlib.util.find_spec("build") is None:
        pytest.fail("the 'build' package is missing: pip install -e '.[dev]'")
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    # --no-isolation: offline and fast, with this environment's setuptools (and wheel);
    # --skip-dependency-check: that setuptools may be older than [build-system] asks for.
    _check([sys.executable, "-m", "build", "--no-isolation", "--skip-dependency-check",
            "--outdir", str(dist), str(ROOT)], cwd=tmp)
    (sdist,) = dist.glob("ckmodel-*.tar.gz")
    (wheel,) = dist.glob("ckmodel-*.whl")
    site = tmp / "site"
    _check([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--disable-pip-version-check", "--target", str(site), str(wheel)], cwd=tmp)
    work = tmp / "elsewhere"
    work.mkdir()
    return {"sdist": sdist, "wheel": wheel, "site": site, "work": work}


def _run_installed(built: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    """``python *args`` from a folder outside the checkout, seeing only the installed copy."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONPATH=str(built["site"]), PYTHONNOUSERSITE="1", COLUMNS="200")
    env.pop("CKMODEL_MODELS_PATH", None)
    return _check([sys.executable, *args], cwd=built["work"], env=env)


def test_sdist_carries_catalog_and_examples(built):
    with tarfile.open(built["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"setup.py", "MANIFEST.in", "models/README.md"} <= names
    assert {f"models/{m}.toml" for m in MODELS} <= names
    for ex in EXAMPLES:
        want = {f"data/{ex}/{f}" for f in EXAMPLE_FILES if (ROOT / "data" / ex / f).is_file()}
        assert want <= names, ex


def test_wheel_carries_catalog_and_examples_once(built):
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    bundled = "ckmodel/_bundled/"
    assert {f"{bundled}models/{m}.toml" for m in MODELS} | {f"{bundled}models/README.md"} <= names
    for ex in EXAMPLES:
        want = {f"{bundled}data/{ex}/{f}" for f in EXAMPLE_FILES
                if (ROOT / "data" / ex / f).is_file()}
        assert want <= names, ex
    # one copy, inside the package: nothing at the top of site-packages, no share/ data files
    assert all(n.startswith(("ckmodel/", "ckmodel-")) for n in names), sorted(names)
    tomls = [n for n in names if n.endswith(".toml")]
    assert len(tomls) == len(MODELS), tomls


def test_installed_resources_point_into_the_install(built):
    code = (
        "import json, ckmodel, ckmodel.resources as r, ckmodel.spec as s\n"
        "ck, oc = r.example_data()\n"
        "print(json.dumps({'file': ckmodel.__file__, 'catalog': str(r.catalog_dir()),\n"
        "    'models': sorted(s.list_models()), 'examples': r.list_examples(),\n"
        "    'example': [str(ck), str(oc)],\n"
        "    'small': [str(p) for p in r.example_data('example_small')]}))\n"
    )
    got = json.loads(_run_installed(built, "-c", code).stdout)
    site = built["site"].resolve()
    assert Path(got["file"]).resolve().is_relative_to(site), got["file"]  # not the checkout
    assert Path(got["catalog"]).resolve() == site / "ckmodel" / "_bundled" / "models"
    assert got["models"] == MODELS
    assert got["examples"] == EXAMPLES
    for p in got["example"] + got["small"]:
        assert Path(p).resolve().is_relative_to(site) and Path(p).is_file(), p
    assert [Path(p).name for p in got["example"]] == ["ck.csv", "outcomes.csv"]


def test_python_m_ckmodel_models_lists_the_catalog(built):
    out = _run_installed(built, "-m", "ckmodel", "models").stdout
    missing = [m for m in MODELS if m not in out]
    assert not missing, f"not listed by `python -m ckmodel models`: {missing}\n{out}"


def test_checkout_reads_the_repository_folders(monkeypatch):
    monkeypatch.delenv("CKMODEL_MODELS_PATH", raising=False)
    # this suite runs from a checkout (or an editable install of one): no copies involved
    assert resources.catalog_dir() == ROOT / "models"
    assert resources.data_dir() == ROOT / "data"
    assert resources.list_examples() == EXAMPLES
    assert resources.example_data() == (ROOT / "data" / "example_trial" / "ck.csv",
                                        ROOT / "data" / "example_trial" / "outcomes.csv")
    assert sorted(list_models()) == MODELS
    assert all(p.parent == ROOT / "models" for p in list_models().values())


def test_unknown_example_names_the_available_ones():
    with pytest.raises(FileNotFoundError, match="no example data set 'nope'.*example_trial"):
        resources.example_data("nope")
