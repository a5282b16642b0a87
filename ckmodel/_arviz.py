"""Import ArviZ once, without its import-time FutureWarning about the 1.x refactor."""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*",
                            category=FutureWarning)
    import arviz as az

__all__ = ["az"]
