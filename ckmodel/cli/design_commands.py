"""``ckmodel next-dose`` and ``ckmodel design``: escalation decisions and design simulation.

``next-dose`` replays a trial file through a design and prints its decision; ``design`` writes
operating characteristics, for one true dose-toxicity curve or for scenarios side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ckmodel.cli.common import app, bad_option, check_file, console, fail, say, shown_warnings

DESIGN_HELP = ("3+3 (six at a de-escalated MTD), 3+3-mtd6 (six at every MTD, the top level "
               "too), atd (accelerated titration then 3+3), boin, crm or ck (CK-guided: needs "
               "--fit and --doses)")
TargetOpt = Annotated[float | None, typer.Option(
    "--target", help="Target DLT rate of BOIN, CRM and CK, in (0, 1) (default 0.3 for BOIN "
                     "and CK, 0.25 for CRM)")]
SkeletonOpt = Annotated[str | None, typer.Option(
    "--skeleton", metavar="P1,P2,...",
    help="CRM skeleton, one increasing probability per dose level (default: dfcrm getprior "
         "with half-width 0.05 and the prior MTD at the middle level)")]
CohortOpt = Annotated[int, typer.Option("--cohort-size", help="BOIN, CRM and CK cohort size")]
MaxNOpt = Annotated[int | None, typer.Option(
    "--max-n", help="BOIN, CRM and CK sample size (default 30); for 3+3 and atd a cap that stops "
                    "the trial without an MTD (default none)")]
OverdoseOpt = Annotated[float | None, typer.Option(
    "--overdose-limit", help="CRM and CK overdose control: only doses with P(DLT rate > "
                             "target) at most this are recommended (CK default 0.25)")]
CkFitOpt = Annotated[Path | None, typer.Option(
    "--fit", help="ck: the CK fit that maps dose to exposure (virtual patients from its "
                  "posterior)")]
CkDosesOpt = Annotated[str | None, typer.Option(
    "--doses", metavar="D1,D2,...", help="ck: the dose of each level, in the fit's amount "
                                         "unit")]
CkExposureOpt = Annotated[str, typer.Option(
    "--exposure", help="ck: the exposure driving toxicity (CMAX, AUC0_28, BM_QPCR_CMAX ...)")]


def _ck_exposure(names: list[str], fit_file: Path | None, doses: str | None, exposure: str,
                 n_levels: int, seed: int) -> Any:
    """The CK design's exposure model from virtual patients of a fit, or None without ck."""
    if "ck" not in names:
        for opt, given in (("--fit", fit_file is not None), ("--doses", doses is not None)):
            if given:
                bad_option(opt, "applies to the ck design only")
        return None
    if fit_file is None or doses is None:
        bad_option("--fit" if fit_file is None else "--doses",
                   "the ck design needs --fit FIT and --doses D1,D2,... (one per dose level)")
    from ckmodel.cli.common import load_fit_file
    from ckmodel.cli.select_commands import parse_doses
    from ckmodel.design import ExposureModel
    from ckmodel.exposure import resolve_metric
    from ckmodel.virtual_patients import simulate_patients

    dose_list = parse_doses(doses)
    if len(dose_list) != n_levels:
        bad_option("--doses", f"{len(dose_list)} doses for {n_levels} dose levels")
    fit = load_fit_file(fit_file)
    try:
        a, m = resolve_metric(exposure, list(fit.spec.output_names), fit.spec.time_unit)
    except ValueError as exc:
        bad_option("--exposure", str(exc))
    say(f"ck: exposure {a}_{m} of new patients at each dose, from {fit_file}")
    try:
        with shown_warnings():
            # 100 patients x 40 draws: the 4,000 exposure samples per level the model keeps
            vp = simulate_patients(fit, dose_list, n_patients=100, n_draws=40, seed=seed,
                                   analytes=[a], metrics=[m])
            return ExposureModel.from_patients(vp, f"{a}_{m}")
    except ValueError as exc:
        fail(exc)


def _design_names(value: str, option: str = "--design") -> list[str]:
    from ckmodel.design import DESIGNS

    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    if not names:
        bad_option(option, f"name a design: {', '.join(DESIGNS)}")
    for n in names:
        if n not in DESIGNS:
            bad_option(option, f"{n!r} is not a design; use one of {', '.join(DESIGNS)}")
    if len(set(names)) != len(names):
        bad_option(option, "a design is named twice")
    return names


def _probabilities(value: str, option: str, *, increasing: str) -> list[float]:
    out = []
    for part in value.split(","):
        try:
            v = float(part)
        except ValueError:
            bad_option(option, f"{part.strip()!r} is not a number (give P1,P2,... e.g. "
                       "0.05,0.1,0.2,0.35,0.5)")
        if not 0 < v < 1:
            bad_option(option, f"{part.strip()} is not a probability in (0, 1)")
        out.append(v)
    diffs = [b - a for a, b in zip(out, out[1:], strict=False)]
    if increasing == "strict" and any(d <= 0 for d in diffs):
        bad_option(option, f"the probabilities must increase with dose, got {value}")
    if increasing == "weak" and any(d < 0 for d in diffs):
        bad_option(option, f"the probabilities must not decrease with dose, got {value}")
    return out


def _check_common(names: list[str], n_levels: int, target: float | None, skeleton: str | None,
                  cohort_size: int, max_n: int | None, overdose_limit: float | None
                  ) -> list[float] | None:
    if n_levels < 1:
        bad_option("--n-doses", f"need at least one dose level, got {n_levels}")
    if target is not None and not 0 < target < 1:
        bad_option("--target", f"{target} is not a DLT rate in (0, 1)")
    if cohort_size < 1:
        bad_option("--cohort-size", f"{cohort_size} is not a positive number of patients")
    if cohort_size != 3 and not {"boin", "crm", "ck"} & set(names):
        bad_option("--cohort-size", "the 3+3 and atd designs fix their own cohort sizes")
    if max_n is not None and max_n < 1:
        bad_option("--max-n", f"{max_n} is not a positive number of patients")
    if overdose_limit is not None and not 0 < overdose_limit < 1:
        bad_option("--overdose-limit", f"{overdose_limit} is not a probability in (0, 1)")
    if overdose_limit is not None and not {"crm", "ck"} & set(names):
        bad_option("--overdose-limit", "applies to the crm and ck designs only")
    if "boin" in names and target is not None and not 0.05 <= target <= 0.6:
        bad_option("--target", f"BOIN's reference implementation accepts targets in "
                   f"[0.05, 0.6], got {target}")
    sk = None
    if skeleton is not None:
        if "crm" not in names:
            bad_option("--skeleton", "applies to the crm design only")
        sk = _probabilities(skeleton, "--skeleton", increasing="strict")
        if len(sk) != n_levels:
            bad_option("--skeleton", f"{len(sk)} values for {n_levels} dose levels")
    return sk


def _build(names: list[str], n_levels: int, **kw: Any) -> dict[str, Any]:
    from ckmodel.design import design_from_name

    out = {}
    for n in names:
        try:
            out[n] = design_from_name(n, n_levels, **kw)
        except ValueError as exc:
            fail(exc, code=2)
    return out


@app.command("next-dose")
def next_dose_command(
    design: Annotated[str, typer.Option("--design", help=DESIGN_HELP)],
    trial: Annotated[Path, typer.Option(
        "--trial", help="Patients so far, in order: CSV with DOSE_LEVEL (1-based) and DLT (0/1)")],
    n_doses: Annotated[int, typer.Option("--n-doses", help="Number of dose levels")],
    target: TargetOpt = None,
    skeleton: SkeletonOpt = None,
    cohort_size: CohortOpt = 3,
    max_n: MaxNOpt = None,
    overdose_limit: OverdoseOpt = None,
    fit_file: CkFitOpt = None,
    doses: CkDosesOpt = None,
    exposure: CkExposureOpt = "CMAX",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Decision table (CSV): DOSE_LEVEL, N, N_DLT, P_DLT, "
                               "RECOMMENDED, CONTINUE")] = None,
) -> None:
    """The escalation meeting's decision: which dose next, or stop (and the MTD)."""
    names = _design_names(design)
    if len(names) != 1:
        bad_option("--design", "next-dose takes one design")
    sk = _check_common(names, n_doses, target, skeleton, cohort_size, max_n, overdose_limit)
    check_file(trial, "--trial")
    from ckmodel.design import next_dose, read_trial
    from ckmodel.errors import DatasetError
    from ckmodel.files import atomic_write

    model = _ck_exposure(names, fit_file, doses, exposure, n_doses, seed=1)
    rule = _build(names, n_doses, target=target, skeleton=sk, cohort_size=cohort_size,
                  max_n=max_n, overdose_limit=overdose_limit, exposure=model)[names[0]]
    try:
        with shown_warnings():
            patients = read_trial(trial, n_doses, exposure=model is not None)
            decision = next_dose(rule, patients, n_doses)
    except DatasetError as exc:
        fail(exc)
    _print_table(decision.table, f"{rule.name}: {len(patients)} patient(s) in {trial}")
    say(decision.text())
    if output is not None:
        atomic_write(output, lambda p: decision.table.to_csv(p, index=False))
        say(f"decision table written to {output}")


@app.command("design")
def design_command(
    design: Annotated[str, typer.Option("--design", help=DESIGN_HELP + "; several, comma-"
                                        "separated, with --scenarios")],
    tox: Annotated[str | None, typer.Option(
        "--tox", metavar="P1,P2,...", help="True DLT probability per dose level")] = None,
    scenarios: Annotated[Path | None, typer.Option(
        "--scenarios", help="CSV of true DLT scenarios: one per row (SCENARIO,D1,D2,...) or, "
                            "with a DOSE_LEVEL column, one per column")] = None,
    target: TargetOpt = None,
    skeleton: SkeletonOpt = None,
    cohort_size: CohortOpt = 3,
    max_n: MaxNOpt = None,
    overdose_limit: OverdoseOpt = None,
    n_trials: Annotated[int, typer.Option("--n-trials", help="Simulated trials")] = 10000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed")] = 1,
    workers: Annotated[int, typer.Option(
        "--workers", help="Local Dask workers (more than 1 starts a local cluster); results "
                          "do not depend on it")] = 1,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", metavar="ADDRESS", help="Dask scheduler to run on (tcp://host:8786)")
    ] = None,
    cohort_interval: Annotated[float, typer.Option(
        "--cohort-interval", help="Days between cohorts (DLT window), for trial duration")
    ] = 28.0,
    fit_file: CkFitOpt = None,
    doses: CkDosesOpt = None,
    exposure: CkExposureOpt = "CMAX",
    exposure_slope: Annotated[float, typer.Option(
        "--exposure-slope", help="ck: true log odds of DLT per log exposure within a dose "
                                 "level (simulation truth; each level's DLT rate stays --tox)")
    ] = 1.0,
    output: Annotated[Path, typer.Option("--output", "-o", help="Operating characteristics "
                                         "(CSV)")] = Path("oc.csv"),
) -> None:
    """Operating characteristics of escalation designs by simulation.

    With --tox: one row per dose level (DOSE_LEVEL 1..K) and DOSE_LEVEL 0 for "no dose
    selected", with P_SELECT, EXPECTED_N, EXPECTED_DLT. With --scenarios: one row per
    scenario and design with P(correct selection), patients above the true MTD (the dose
    closest to --target), expected size, DLTs and duration.
    """
    names = _design_names(design)
    if (tox is None) == (scenarios is None):
        bad_option("--tox", "give either --tox or --scenarios")
    if n_trials < 1:
        bad_option("--n-trials", f"{n_trials} is not a positive number of trials")
    if seed < 0:
        bad_option("--seed", f"{seed} is not a non-negative integer")
    if workers < 1:
        bad_option("--workers", f"{workers} is not a positive number of workers")
    if not cohort_interval > 0:
        bad_option("--cohort-interval", f"{cohort_interval} is not a positive number of days")
    if tox is not None:
        if len(names) != 1:
            bad_option("--design", "--tox takes one design; compare several with --scenarios")
        curves = {"tox": _probabilities(tox, "--tox", increasing="weak")}
    else:
        check_file(scenarios, "--scenarios")  # type: ignore[arg-type]
        from ckmodel.design import read_scenarios
        from ckmodel.errors import DatasetError

        try:
            curves = read_scenarios(scenarios)  # type: ignore[arg-type]
        except DatasetError as exc:
            fail(exc)
        lengths = {len(c) for c in curves.values()}
        if len(lengths) != 1:
            fail(f"{scenarios}: scenarios have different numbers of dose levels", code=2)
    n_levels = len(next(iter(curves.values())))
    sk = _check_common(names, n_levels, target, skeleton, cohort_size, max_n, overdose_limit)
    if exposure_slope != 1.0 and "ck" not in names:
        bad_option("--exposure-slope", "applies to the ck design only")
    model = _ck_exposure(names, fit_file, doses, exposure, n_levels, seed)
    rules = _build(names, n_levels, target=target, skeleton=sk, cohort_size=cohort_size,
                   max_n=max_n, overdose_limit=overdose_limit, exposure=model,
                   simulation_slope=exposure_slope)
    caps = {n: (max_n if n in ("3+3", "3+3-mtd6", "atd") else None) for n in names}
    import logging

    from ckmodel.design import compare_designs, simulate_design
    from ckmodel.files import atomic_write

    logging.getLogger("distributed").setLevel(logging.WARNING)  # no cluster chatter
    where = (f"scheduler {scheduler}" if scheduler else
             f"{workers} local workers" if workers > 1 else "one core")
    say(f"simulating {n_trials} trials per run on {where} (seed {seed})")
    with shown_warnings():
        if tox is not None:
            name = names[0]
            sim = simulate_design(rules[name], curves["tox"], n_trials, seed=seed,
                                  max_patients=caps[name], workers=workers,
                                  scheduler=scheduler)
            table = sim.to_frame()
            ref = 0.3 if target is None else target
            summ = sim.summary(ref, cohort_interval=cohort_interval)
            _print_table(table, f"{rules[name].name} on {tox} ({n_trials} trials)")
            say(f"P(no dose selected) = {summ['P_NONE']:.3f}; expected trial size "
                f"{summ['EXPECTED_N']:.1f} patients, {summ['EXPECTED_DLT']:.2f} DLTs, "
                f"{summ['EXPECTED_DURATION']:.0f} days ({summ['EXPECTED_COHORTS']:.1f} cohorts "
                f"x {cohort_interval:g}); true MTD (closest to {ref:g}) = dose level "
                f"{summ['TRUE_MTD']:.0f}, P(correct) = {summ['P_CORRECT']:.3f}")
            say("DOSE_LEVEL 0 is 'no dose selected' (nobody is treated there)")
        else:
            ref = 0.3 if target is None else target
            if any(caps[n] is not None for n in names):
                bad_option("--max-n", "with --scenarios it applies to boin and crm only")
            table = compare_designs(rules, curves, n_trials, seed=seed, target=ref,
                                    cohort_interval=cohort_interval, workers=workers,
                                    scheduler=scheduler)
            _print_table(table.iloc[:, :9], f"{len(curves)} scenario(s) x {len(names)} "
                         f"design(s), {n_trials} trials each; true MTD = dose closest to "
                         f"{ref:g}")
    atomic_write(output, lambda p: table.to_csv(p, index=False))
    say(f"operating characteristics written to {output}")


def _print_table(frame: Any, title: str) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), title_justify="left")
    for col in frame.columns:
        table.add_column(Text(str(col)), justify="right")
    for row in frame.itertuples(index=False):
        table.add_row(*(Text(_cell(v)) for v in row))
    console.print(table)


def _cell(value: Any) -> str:
    import math

    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value)
