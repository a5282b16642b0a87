"""Sampler diagnostics summarised in one table and one loud warning."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from ckmodel._arviz import az
from ckmodel.errors import ConvergenceWarning, hint

__all__ = ["convergence_table", "check_convergence", "lagging_chains", "weak_iiv", "RHAT_MAX",
           "ESS_MIN", "BFMI_MIN", "HUG_RATIO"]

#: R-hat above this flags a parameter (Vehtari et al. 2021).
RHAT_MAX = 1.01
#: Bulk or tail ESS below this flags a parameter (100 per chain for 4 chains).
ESS_MIN = 400
#: E-BFMI below this flags a chain (Betancourt 2016; the threshold Stan and ArviZ use).
BFMI_MIN = 0.3


def convergence_table(idata: Any, var_names: list[str] | None = None) -> pd.DataFrame:
    """R-hat and bulk/tail ESS of every scalar in ``var_names`` (default: population-level)."""
    post = idata.posterior
    if var_names is None:
        # the signed IIV SDs (omega_<p>_signed) are judged by omega = |v|: their sign
        # only says which of two mirror-image modes a chain is in
        var_names = [v for v in post.data_vars
                     if not set(post[v].dims) & {"subject"} and not v.startswith("chol")
                     and not v.endswith("_signed")]
    n_chains = post.sizes.get("chain", 1)
    n_draws = post.sizes.get("draw", 1)
    if n_chains * n_draws < 8:
        return pd.DataFrame(columns=["r_hat", "ess_bulk", "ess_tail"])
    summ = az.summary(idata, var_names=var_names, kind="diagnostics")
    return summ[["r_hat", "ess_bulk", "ess_tail"]]


def _sample_stat(idata: Any, names: tuple[str, ...]) -> Any:
    stats = getattr(idata, "sample_stats", None)
    if stats is None:
        return None
    for n in names:
        if n in stats:
            return stats[n]
    return None


#: A chain whose mean log density is this many within-chain SDs below the median chain's is
#: reported as lagging (stuck in a poor region or at its start).
LAG_SDS = 6.0


def lagging_chains(idata: Any, n_sds: float = LAG_SDS) -> list[int]:
    """Chains stuck far below the others in log density, or not moving at all.

    A chain is flagged when its mean log density (sample stat ``lp``/``logp``) lies more than
    ``n_sds`` pooled within-chain SDs below the median of the chain means, or when more than
    half of its draws repeat the previous draw's log density exactly (every proposal rejected).
    R-hat also grows in both cases, but it does not say which chain or why.

    Returns
    -------
    list of int
        Indices (the ``chain`` coordinate's positions) of the flagged chains.
    """
    lp = _sample_stat(idata, ("lp", "logp"))
    if lp is None or lp.sizes.get("chain", 1) < 2 or lp.sizes.get("draw", 0) < 4:
        return []
    x = np.asarray(lp.transpose("chain", "draw").values, dtype=float)
    means = np.nanmean(x, axis=1)
    sd = np.sqrt(np.nanmean(np.nanvar(x, axis=1)))
    centre = np.nanmedian(means)
    frozen = np.mean(np.diff(x, axis=1) == 0.0, axis=1) > 0.5
    low = means < centre - n_sds * max(sd, 1e-12)
    return [int(c) for c in np.flatnonzero(low | frozen | ~np.isfinite(means))]


#: An IIV SD whose 2.5 % posterior quantile lies below this fraction of its median is reported
#: as hugging zero: its 95 % interval reaches more than ten-fold below the median, as a
#: posterior piled against zero does (a well-informed SD spans a factor of about 2).
HUG_RATIO = 0.1


def weak_iiv(idata: Any, ratio: float = HUG_RATIO) -> list[dict[str, Any]]:
    """Random effects whose SD the data cannot support: the posterior hugs zero.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit's draws, with ``omega`` on dim ``iiv``.
    ratio : float
        Flag when the 2.5 % quantile of omega is below ``ratio`` times its median.

    Returns
    -------
    list of dict
        ``parameter``, ``median``, ``lower``, ``upper`` (95 % interval of the SD) and
        ``advice``, one per flagged parameter.
    """
    post = idata.posterior
    if "omega" not in post:
        return []
    out = []
    for name in post["omega"].coords["iiv"].values:
        draws = np.asarray(post["omega"].sel(iiv=name).values, dtype=float).ravel()
        lo, med, hi = np.quantile(draws, [0.025, 0.5, 0.975])
        if lo < ratio * med:
            out.append({"parameter": str(name), "median": float(med), "lower": float(lo),
                        "upper": float(hi), "advice": (
                            f"the IIV SD of {name} hugs zero (median {med:.3g}, 95% CrI "
                            f"{lo:.2g}-{hi:.2g}): the data barely inform it. Fix it or drop "
                            "its random effect ("
                            + hint(python=f"spec.with_parameter('{name}', iiv=False)",
                                   cli=f"--iiv {name}=none")
                            + "), and compare the fits by LOO ("
                            + hint(python="ckmodel.diagnostics", cli="ckmodel compare")
                            + "); running longer will not help")})
    return out


def check_convergence(idata: Any, *, max_treedepth: int = 10, warn: bool = True,
                      ess_min: float = ESS_MIN, rhat_max: float = RHAT_MAX) -> dict[str, Any]:
    """Summarise divergences, tree depth, R-hat and ESS; warn once if anything is off.

    Returns
    -------
    dict
        ``divergences`` (total), ``divergences_per_chain``, ``treedepth_hits``,
        ``mean_tree_depth``, ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``, ``flagged``
        (parameters with R-hat > 1.01 or ESS < 400), ``lagging_chains`` (see
        :func:`lagging_chains`), ``weak_iiv`` (see :func:`weak_iiv`), ``chains``, ``draws``,
        ``min_bfmi`` (E-BFMI, when the sampler records energy), ``problems`` (what to do, one
        line each) and ``ok``.
    """
    out: dict[str, Any] = {"chains": int(idata.posterior.sizes.get("chain", 1)),
                           "draws": int(idata.posterior.sizes.get("draw", 1))}
    div = _sample_stat(idata, ("diverging",))
    if div is not None:
        per_chain = div.sum("draw").values.astype(int)
        out["divergences"] = int(per_chain.sum())
        out["divergences_per_chain"] = per_chain.tolist()
    depth = _sample_stat(idata, ("tree_depth", "depth"))
    if depth is not None:
        out["mean_tree_depth"] = float(depth.mean())
        out["treedepth_hits"] = int((depth >= max_treedepth).sum())
    steps = _sample_stat(idata, ("n_steps", "tree_size"))
    if steps is not None:
        out["mean_leapfrog_steps"] = float(steps.mean())
    energy = _sample_stat(idata, ("energy",))
    if energy is not None and energy.sizes.get("draw", 0) > 2:
        out["min_bfmi"] = float(np.min(az.bfmi(idata)))
    table = convergence_table(idata)
    flagged = []
    if len(table):
        out["max_rhat"] = float(np.nanmax(table["r_hat"]))
        out["min_ess_bulk"] = float(np.nanmin(table["ess_bulk"]))
        out["min_ess_tail"] = float(np.nanmin(table["ess_tail"]))
        bad = table[(table["r_hat"] > rhat_max) | (table["ess_bulk"] < ess_min)
                    | (table["ess_tail"] < ess_min)]
        flagged = list(bad.index)
    out["flagged"] = flagged
    out["lagging_chains"] = lagging_chains(idata)
    out["weak_iiv"] = weak_iiv(idata)
    problems = []
    if out["lagging_chains"]:
        problems.append(f"chain(s) {out['lagging_chains']} stuck far below the others in log "
                        "density (or not moving): the chains did not find the same region; "
                        "give better initial values or more informative priors, or fix "
                        "parameters the data cannot identify")
    if out.get("divergences", 0) > 0:
        problems.append(f"{out['divergences']} divergent transition(s) (per chain: "
                        f"{out['divergences_per_chain']}): raise target_accept (e.g. 0.95), "
                        "use centred effects for data-rich parameters, or tighten priors")
    # hitting the maximum tree depth costs time, not correctness (Stan's guidance): a note,
    # not a failed check, so that a fit can still be judged converged and run on
    out["efficiency"] = ([f"{out['treedepth_hits']} draw(s) hit the maximum tree depth "
                          f"{max_treedepth}: costly draws, not biased ones; a "
                          "reparametrisation or more informative priors would make them "
                          "cheaper"] if out.get("treedepth_hits", 0) > 0 else [])
    if flagged:
        problems.append(f"{len(flagged)} parameter(s) with R-hat > {rhat_max} or ESS < "
                        f"{ess_min:g} (max R-hat {out['max_rhat']:.3f}, min bulk ESS "
                        f"{out['min_ess_bulk']:.0f}): {', '.join(flagged[:8])}"
                        f"{' ...' if len(flagged) > 8 else ''}; run longer (more draws, or a "
                        "larger time budget: until_converged= in Python, --until-converged "
                        "on the command line) or more chains")
        for w in out["weak_iiv"]:
            if f"omega[{w['parameter']}]" in flagged or any(
                    f.startswith(f"omega[{w['parameter']}") for f in flagged):
                problems.append(w["advice"])
    if out.get("min_bfmi", 1.0) < BFMI_MIN:
        problems.append(f"E-BFMI {out['min_bfmi']:.2f} below {BFMI_MIN} in some chain: the "
                        "sampler explores the energy distribution poorly (heavy tails or a "
                        "funnel); reparametrise (centred/non-centred effects)")
    out["problems"] = problems
    out["ok"] = not problems
    if problems and warn:
        warnings.warn("Sampler diagnostics need attention:\n  - " + "\n  - ".join(problems)
                      + "\nSee Fit.diagnostics() for the full table.", ConvergenceWarning,
                      stacklevel=3)
    return out
