"""The sections of the posterior report of a fit, as format-free document blocks.

Each ``*_section`` function takes a fit (and what else it needs) and returns one
:class:`~ckmodel.report.document.Section`; :func:`ckmodel.report.build_report` puts them in
reading order, the convergence verdict first. The simulations behind the GOF/NPDE panels and
the VPCs share one set of replicates of the trial (new virtual subjects from the posterior,
:func:`ckmodel.diagnostics.simulate_replicates`), so a report is deterministic given the fit
and its seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ckmodel.fitting.centering import describe_centering
from ckmodel.report.document import Section, Table, Text
from ckmodel.report.figures import equation_blocks, figure_block

__all__ = ["verdict_section", "data_section", "nca_section", "model_section",
           "estimates_section", "priors_section", "sampler_section", "gof_section",
           "vpc_section", "individual_section", "provenance_section", "stratify_column",
           "nca_tables"]

#: NCA metrics the report tabulates (those of the protocol; the CSV of ``ckmodel nca`` has all).
NCA_METRICS = ("CMAX", "TMAX", "AUC0_28", "AUC0_84", "CLST", "TLST", "LAMZHL")


def stratify_column(fit: Any) -> str | None:
    """The subject column the report stratifies by: ``DOSE_LEVEL``, else ``DOSE``, else none."""
    cov = getattr(fit.data, "covariates", None)
    for col in ("DOSE_LEVEL", "DOSE"):
        if cov is not None and col in cov.columns and cov[col].nunique() > 1:
            return col
    return None


def verdict_section(fit: Any) -> Section:
    """Convergence first: the verdict line, what to do about each problem, and the checks."""
    from ckmodel.diagnostics import convergence_checks

    summary = fit.summary()
    conv = summary.convergence
    blocks: list = []
    if not conv:
        blocks.append(Text("Convergence was not assessed: the fit used an approximate sampler "
                           f"({fit.meta.get('sampler')}). Treat every interval below as "
                           "approximate.", "alert"))
    elif conv.get("ok"):
        blocks.append(Text(summary.verdict(), "ok"))
    else:
        blocks.append(Text("This fit has problems; read them before the estimates. "
                           + summary.verdict(), "alert"))
        advice = [str(m) for m in conv.get("problems", [])]
        if advice:
            blocks.append(Text(advice, "list"))
    notes = [n for n in summary.notes if not n.startswith("sampler ")]
    if notes:
        blocks.append(Text(notes, "list"))
    if conv:
        checks = convergence_checks(fit).reset_index()
        checks["passed"] = checks["passed"].map({True: "pass", False: "FAIL"})
        blocks.append(Table(checks, caption="Sampler checks (thresholds of Vehtari et al. 2021 "
                                            "and Betancourt 2017)"))
    return Section("verdict", "Convergence verdict", tuple(blocks))


def data_section(fit: Any) -> Section:
    """The data: analytes with units, records used and left out by reason, subjects per level."""
    from ckmodel.fitting.summary import records_table

    data = fit.data
    rec = records_table(fit)
    n_left = int(rec["RECORDS"].sum() - rec["USED"].sum()) if "USED" in rec else 0
    blq = fit.meta.get("options", {}).get("blq_method", "M3")
    blocks: list = [Text(f"{fit.meta.get('n_subjects', '?')} subjects and "
                         f"{fit.meta.get('n_obs', '?')} records from "
                         f"{fit.meta.get('data_source') or 'the data given'}; {n_left} "
                         "record(s) left out of the fit, counted by reason below. BLQ records "
                         f"enter the likelihood censored ({blq}), "
                         "not dropped.")]
    blocks.append(Table(rec, caption="Records per analyte: in the file, used in the fit, of "
                                     "which BLQ, and left out by reason"))
    strat = stratify_column(fit)
    if strat is not None:
        cov = data.covariates
        cols = [c for c in ("DOSE_LEVEL", "DOSE") if c in cov.columns]
        counts = cov.groupby(cols, observed=True).size().rename("SUBJECTS").reset_index()
        unit = fit.spec.amount_unit or "AMT unit"
        if "DOSE" in counts:
            counts = counts.rename(columns={"DOSE": f"DOSE ({unit})"})
        blocks.append(Table(counts, caption="Subjects per dose level"))
    blocks.append(Text(data.summary(), "pre"))
    return Section("data", "Data", tuple(blocks))


def _nca_cell(r: pd.Series) -> str:
    stat = str(r["STATISTIC"])
    if r["N"] == 0:
        return "-"
    if stat.startswith("geometric"):
        cv = "" if pd.isna(r["GEOCV"]) else f" ({r['GEOCV']:.0f} %)"
        return f"{r['GEOMEAN']:.4g}{cv}"
    if stat.startswith("median"):
        return f"{r['MEDIAN']:.4g} ({r['MIN']:.3g}-{r['MAX']:.3g})"
    sd = "" if pd.isna(r["SD"]) else f" ({r['SD']:.3g})"
    return f"{r['MEAN']:.4g}{sd}"


def nca_tables(summ: pd.DataFrame, by: str | None) -> dict[str, pd.DataFrame]:
    """Per analyte, one row per group and one column per metric ("central (spread)", unit).

    A cell computed on fewer profiles than the group has says ``[n=k]``.
    """
    summ = summ[summ["METRIC"].isin(NCA_METRICS)]
    out = {}
    for analyte, ga in summ.groupby("ANALYTE", sort=True, observed=True):
        rows = []
        groups = ga.groupby(by, sort=True, observed=True) if by else [(None, ga)]
        for key, g in groups:
            n_max = int(g["N"].max())
            row = {by: key} if by else {}
            row["profiles"] = n_max
            for _, r in g.iterrows():
                cell = _nca_cell(r)
                if 0 < r["N"] < n_max:
                    cell += f" [n={int(r['N'])}]"
                row[f"{r['METRIC']} ({r['UNIT']})"] = cell
            rows.append(row)
        out[str(analyte)] = pd.DataFrame(rows)
    return out


def nca_section(fit: Any, *, by: str | None, seed: int, n_sim: int) -> Section:
    """NCA by ``by`` (e.g. dose level) with units, and profiles against the fitted population."""
    from ckmodel.nca import nca, nca_summary
    from ckmodel.plots import plot_profiles

    table = nca(fit.data)
    summ = nca_summary(table, fit.data, by=by)
    blocks: list = [
        Text("Non-compartmental analysis of each subject's observed profile (PKNCA "
             "conventions: linear-up/log-down AUC, BLQ before the first quantified record as 0 "
             "and after it dropped). Cells: geometric mean (geometric CV %) for exposures, "
             "median (range) for times, mean (SD) for half-lives; [n=k] where fewer "
             "profiles than the group's allow the metric."),
    ]
    blocks += [Table(t, caption=f"NCA of {a}" + (f" by {by}" if by else ""))
               for a, t in nca_tables(summ, by).items()]
    blocks += [
        figure_block(plot_profiles(fit.data, by=by, fit=fit, n_sim=min(n_sim, 100), seed=seed),
                     "profiles", caption="Observed profiles (BLQ at their LLOQ, open markers) "
                     "with the fitted population median and 90 % band of new subjects per "
                     "dose level"),
    ]
    return Section("nca", "Observed kinetics and NCA", tuple(blocks))


def model_section(fit: Any) -> Section:
    """The model: description, equations (typeset offline), parameters, outputs, covariates."""
    from ckmodel.spec.render import parameter_table, to_text

    spec = fit.spec
    meta = fit.meta
    blocks: list = [Text(f"{spec.name}: {spec.description}. Time unit {spec.time_unit}; dose "
                         f"unit (AMT) {spec.amount_unit or 'as in the data'}."
                         + (f" Reference: {spec.reference}." if spec.reference else ""))]
    blocks += [b for _, b in equation_blocks(spec)]
    blocks.append(Text(to_text(spec), "pre"))
    params = parameter_table(spec).reset_index()
    fixed = meta.get("options", {}).get("fixed", {}) or {}
    params["estimated"] = ["fixed at " + f"{fixed[p]:g}" if p in fixed else "yes"
                           for p in params["parameter"]]
    blocks.append(Table(params, caption="Parameters: units, scale of the random effect, "
                                        "priors of the typical value and of the IIV SD"))
    errors = meta.get("error_models", {})
    outs = pd.DataFrame([{"analyte": o.name, "unit": o.unit,
                          "error model": errors.get(o.name, o.error), "sigma prior": str(o.sigma),
                          "fitted": o.name in (meta.get("analytes") or [o.name])}
                         for o in spec.outputs])
    blocks.append(Table(outs, caption="Outputs and residual error models"))
    formulas = meta.get("covariate_formulas") or []
    if formulas:
        blocks.append(Text([str(f) for f in formulas], "list"))
    opts = meta.get("options", {})
    blocks.append(Text(f"Random effects {'correlated' if opts.get('correlated') else 'independent'}"
                       f"; {describe_centering(meta)}"
                       f"; BLQ method {opts.get('blq_method', 'M3')}.", "note"))
    return Section("model", "Model", tuple(blocks))


def estimates_section(fit: Any) -> Section:
    """Typical values, IIV SD and CV %, shrinkage, residual errors and covariate effects."""
    from ckmodel.diagnostics import eta_shrinkage
    from ckmodel.fitting.summary import summary_table

    tab = summary_table(fit).reset_index().rename(columns={"index": "parameter"})
    tab = tab.rename(columns={"lower": "2.5%", "upper": "97.5%", "cv_percent": "CV %",
                              "r_hat": "R-hat", "ess_bulk": "ESS bulk", "ess_tail": "ESS tail"})
    blocks: list = [Table(tab, caption="Posterior medians and 95 % credible intervals "
                                       "(typical values in their units; IIV SDs on the scale of "
                                       "the random effect, CV % = sqrt(exp(omega^2) - 1) for log "
                                       "parameters)")]
    if "omega" in fit.posterior:
        shr = eta_shrinkage(fit).reset_index()
        shr["high"] = shr["high"].map({True: "yes (> 30 %)", False: "no"})
        shr["shrinkage"] = 100 * shr["shrinkage"]
        blocks.append(Table(shr.rename(columns={"shrinkage": "shrinkage %"}),
                            caption="Eta shrinkage (SD form, 1 - SD(posterior mean eta) / "
                                    "omega): above 30 % the individual estimates lean on the "
                                    "population and diagnostics by individual are weak"))
    return Section("estimates", "Estimates", tuple(blocks))


def priors_section(fit: Any, *, seed: int) -> Section:
    """Priors against posteriors, as a table of contraction and a figure."""
    from ckmodel.diagnostics import prior_posterior_table
    from ckmodel.plots import plot_prior_posterior

    tab = prior_posterior_table(fit, seed=seed).reset_index()
    return Section("priors", "Priors against posteriors", (
        Text("Posterior contraction 1 - (IQR posterior / IQR prior)^2 on the plotted scale: near "
             "1 the data dominate, near 0 the prior does (Schad, Betancourt & Vasishth 2021)."),
        Table(tab, caption="Priors as written, posterior median and 95 % CrI, contraction"),
        figure_block(plot_prior_posterior(fit, seed=seed), "priors",
                     caption="Prior densities (lines) against posterior histograms"),
    ))


def sampler_section(fit: Any, *, max_rows: int = 15) -> Section:
    """Per-parameter R-hat and ESS (worst first) and rank plots."""
    from ckmodel.diagnostics import parameter_convergence
    from ckmodel.plots import plot_rank

    blocks: list = []
    if fit.meta.get("convergence"):
        pc = parameter_convergence(fit)
        worst = (pc.assign(_r=-pc["r_hat"]).sort_values(["passed", "_r", "ess_bulk"])
                 .drop(columns="_r").head(max_rows).reset_index()
                 .rename(columns={"index": "quantity"}))
        worst["passed"] = worst["passed"].map({True: "pass", False: "FAIL"})
        blocks.append(Table(worst, caption=f"The {len(worst)} least converged quantities "
                                           f"(of {len(pc)}), worst R-hat first"))
    blocks.append(figure_block(plot_rank(fit), "rank", caption="Rank plots per chain: flat "
                               "histograms when the chains mix (Vehtari et al. 2021)"))
    return Section("sampler", "Sampler diagnostics", tuple(blocks))


def gof_section(fit: Any, replicates: Any, *, by: str | None, seed: int) -> Section:
    """Observed against PRED/IPRED, NPDE against time and prediction (BLQ through censoring)."""
    from ckmodel.diagnostics import gof_table
    from ckmodel.plots import plot_gof

    tab = gof_table(fit, seed=seed, replicates=replicates, stratify=by)
    npde = tab["NPDE"].to_numpy(float)
    npde = npde[np.isfinite(npde)]
    stats = pd.DataFrame([{"analyte": a, "records": int(len(g)),
                           "NPDE mean": float(np.nanmean(g["NPDE"])),
                           "NPDE SD": float(np.nanstd(g["NPDE"], ddof=1)),
                           "|NPDE| > 1.96 %": 100 * float(np.nanmean(np.abs(g["NPDE"]) > 1.96))}
                          for a, g in tab.groupby("ANALYTE", sort=False, observed=True)])
    return Section("gof", "Goodness of fit", (
        Text(f"PRED: population prediction (typical subject); IPRED: individual posterior "
             f"median. NPDE from {replicates.n_sim} replicates of the trial with new subjects "
             f"({npde.size} records; BLQ records imputed through their censoring, as Nguyen et "
             "al. 2012). Well-specified: NPDE mean 0, SD 1, 5 % beyond +-1.96."),
        Table(stats, caption="NPDE per analyte"),
        figure_block(plot_gof(tab), "gof", caption="Goodness of fit: observed against PRED and "
                     "IPRED (log axes, identity line), NPDE against time and PRED"),
    ))


def vpc_section(fit: Any, replicates: Any, *, by: str | None, bins: Any = None) -> Section:
    """VPC and pcVPC per analyte and stratum ``by``, with observed against simulated BLQ."""
    from ckmodel.diagnostics import vpc
    from ckmodel.plots import plot_vpc

    strat = by
    blocks: list = [Text(f"{replicates.n_sim} replicates of the trial with new virtual subjects "
                         "from the posterior (not the fitted individuals). Lines: observed 5th, "
                         "50th and 95th percentiles (BLQ records counted at their LLOQ, as PsN "
                         "does); bands: 95 % intervals of the same percentiles over replicates. "
                         "Lower panels: observed fraction BLQ against its simulated interval.")]
    for pc in (False, True):
        res = vpc(fit, pc=pc, stratify=strat, bins=bins, replicates=replicates)
        name = "pcvpc" if pc else "vpc"
        tab = res.table if hasattr(res, "table") else None
        outside = None
        if tab is not None and {"OBS_P50", "SIM_P50_LO", "SIM_P50_HI"} <= set(tab.columns):
            ok = tab["OBS_P50"].notna()
            outside = int(((tab["OBS_P50"] < tab["SIM_P50_LO"]) |
                           (tab["OBS_P50"] > tab["SIM_P50_HI"]))[ok].sum())
            blocks.append(Text(f"{'pcVPC' if pc else 'VPC'}: observed median outside its "
                               f"simulated 95 % interval in {outside} of {int(ok.sum())} bins.",
                               "note"))
        label = "Prediction-corrected VPC" if pc else "VPC"
        blocks.append(figure_block(plot_vpc(res), name, caption=f"{label} by analyte"
                                   + (f" and {strat}" if strat else "")))
    return Section("vpc", "Visual predictive checks", tuple(blocks))


def individual_section(fit: Any, *, per_page: int = 12, max_subjects: int = 48) -> Section:
    """Individual posterior bands over the whole dosing history, 12 subjects per figure."""
    from ckmodel.plots import plot_individual

    subjects = [str(s) for s in fit.posterior["theta"].subject.values]
    shown = subjects[:max_subjects]
    blocks: list = []
    if len(shown) < len(subjects):
        blocks.append(Text(f"The first {len(shown)} of {len(subjects)} subjects are drawn; "
                           "plot_individual(fit, subjects=...) draws any.", "note"))
    pred = fit.predict(quantiles=(0.05, 0.5, 0.95))  # once for every page
    for k in range(0, len(shown), per_page):
        page = shown[k:k + per_page]
        blocks.append(figure_block(plot_individual(fit, page, prediction=pred),
                                   f"individual-{k // per_page + 1}",
                                   caption=f"Individual fits, subjects {page[0]}-{page[-1]}: "
                                           "observations and the 90 % posterior band of "
                                           "each subject's prediction"))
    return Section("individual", "Individual fits", tuple(blocks))


def provenance_section(fit: Any, meta: dict[str, Any]) -> Section:
    """What the report was built from: fit settings, seeds, hashes and package versions."""
    m = fit.meta
    rows = [("model", fit.spec.name), ("model hash", m.get("spec_hash")),
            ("data", m.get("data_source")), ("data hash", m.get("data_hash")),
            ("sampler", m.get("sampler")),
            ("chains x (tune + draws)",
             f"{m.get('chains')} x ({m.get('tune')} + {m.get('draws')})"),
            ("target accept", m.get("target_accept")), ("fit seed", m.get("seed")),
            ("sampling time (s)", m.get("sampling_seconds")),
            ("report seed", meta.get("seed")), ("report replicates", meta.get("n_sim"))]
    rows += [(f"version: {k}", v) for k, v in sorted((m.get("versions") or {}).items())]
    rows += [(f"report version: {k}", v) for k, v in sorted(meta.get("versions", {}).items())
             if (m.get("versions") or {}).get(k) != v]
    tab = pd.DataFrame([(k, "" if v is None else str(v)) for k, v in rows],
                       columns=["item", "value"])
    return Section("provenance", "Provenance", (
        Text("The same fit file and report seed give the same report, byte for byte."),
        Table(tab, caption="Settings, seeds and versions")))
