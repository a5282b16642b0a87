"""Model specifications: parse ``models/*.toml`` into immutable :class:`ModelSpec` objects."""

from ckmodel.spec.expr import compile_expr, parse_expr
from ckmodel.spec.model import (
    ERROR_MODELS,
    SCALES,
    ModelSpec,
    Output,
    Parameter,
    State,
    Switch,
    from_scale,
    to_scale,
)
from ckmodel.spec.parse import catalog_dirs, list_models, load_model, spec_from_dict
from ckmodel.spec.prior import Prior

__all__ = [
    "ERROR_MODELS",
    "SCALES",
    "ModelSpec",
    "Output",
    "Parameter",
    "Prior",
    "State",
    "Switch",
    "catalog_dirs",
    "compile_expr",
    "list_models",
    "load_model",
    "parse_expr",
    "spec_from_dict",
    "to_scale",
    "from_scale",
]
