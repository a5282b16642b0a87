"""``python -m ckmodel``: the same command line as the ``ckmodel`` console script."""

from __future__ import annotations

if __name__ == "__main__":
    from ckmodel.cli import main

    main()
