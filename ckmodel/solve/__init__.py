"""Trajectories from a ModelSpec: closed form where given, ODE integration otherwise."""

from ckmodel.solve.numpy_solver import SolverOptions, evaluate_outputs, solve_states

__all__ = ["SolverOptions", "evaluate_outputs", "solve_states"]
