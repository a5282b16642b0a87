"""The curated public API: every name in ckmodel.__all__ resolves, lazily."""

import subprocess
import sys

import ckmodel


def test_every_public_name_resolves():
    assert sorted(set(ckmodel.__all__)) == sorted(ckmodel.__all__)
    for name in ckmodel.__all__:
        assert getattr(ckmodel, name) is not None, name


def test_import_is_light():
    code = ("import sys, ckmodel, ckmodel.cli; "
            "print(sorted(m for m in ('pandas', 'sympy', 'pymc', 'pytensor', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
