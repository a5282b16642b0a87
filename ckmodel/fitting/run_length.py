"""Run length that adapts: sample on until the convergence checks pass, within a budget.

``fit(until_converged=600)`` (the default; ``--until-converged`` on the command line). With
nutpie one run streams: it is planned long, its first ``n`` draws per chain are checked at
checkpoints that follow the shortfall (:func:`next_run_length`), and it stops at the first
``n`` that passes; the kept draws do not depend on when they were read. Other samplers run
again, longer. Divergences and stuck chains, which more draws of the same adaptation do not
mend, start a new run with twice the warm-up and a higher target acceptance. Every run is
recorded (``Fit.meta["attempts"]``).
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np

from ckmodel.fitting.convergence import BFMI_MIN, ESS_MIN, RHAT_MAX, check_convergence
from ckmodel.fitting.samplers import Sampler

__all__ = ["run_until", "next_run_length", "next_checkpoint", "strip_unconstrained",
           "geometry_failed", "UNTIL_CONVERGED", "MAX_GROWTH"]

log = logging.getLogger("ckmodel.fitting.run")

#: Default time budget (seconds) within which a fit that fails its convergence checks
#: samples on (``fit(until_converged=...)``, ``--until-converged``).
UNTIL_CONVERGED = 600.0


def strip_unconstrained(idata: Any) -> Any:
    """Drop nutpie's unconstrained copies (``*_log__``); keep the natural-scale variables."""
    unconstrained = [v for v in idata.posterior.data_vars if str(v).endswith("__")]
    if unconstrained:
        idata.posterior = idata.posterior.drop_vars(unconstrained)
    return idata


def _growth(verdict: dict[str, Any], margin: float, least: float) -> float:
    """Factor by which the draws should grow for the checks to pass (``least`` to 4)."""
    ess = verdict.get("min_ess_bulk")
    rhat = verdict.get("max_rhat")
    factors = [least]
    if ess is not None and np.isfinite(ess) and ess > 0:
        factors.append(margin * ESS_MIN / ess)
    if rhat is not None and np.isfinite(rhat):
        factors.append((rhat - 1.0) / (RHAT_MAX - 1.0))
    return min(max(factors), 4.0)


def next_run_length(verdict: dict[str, Any], draws: int, tune: int) -> tuple[int, int]:
    """Draws and warm-up of the next run after a failed convergence check.

    Draws grow by the factor the checks ask for: ``1.25 ESS_MIN / lowest ESS`` (bulk ESS
    grows about in proportion to the draws) or ``(R-hat - 1) / (RHAT_MAX - 1)`` (R-hat - 1
    shrinks about as 1 / draws), whichever is larger, at least 1.5x and at most 4x, rounded
    up to 50. Warm-up doubles when the adaptation itself looks at fault (divergences, a
    lagging chain, R-hat above 1.05) and is kept otherwise.
    """
    rhat = verdict.get("max_rhat")
    new_draws = int(np.ceil(draws * _growth(verdict, 1.25, 1.5) / 50.0) * 50)
    troubled = (verdict.get("divergences", 0) or verdict.get("lagging_chains")
                or (rhat is not None and not rhat <= 1.05))
    return new_draws, (2 * tune if troubled else tune)


def next_checkpoint(verdict: dict[str, Any], draws: int) -> int:
    """Draws per chain at which a streamed run is checked next, after failing at ``draws``.

    The factor of :func:`next_run_length` with a 10 % margin on the ESS shortfall and at
    least 1.2x, rounded up to 50: in a stream, falling short costs one more read of the
    draws, not a new warm-up, so the checkpoint follows the shortfall closely and the run
    stops nearer the draws it needs. The checkpoints depend on the draws only, never on
    timing.
    """
    return int(np.ceil(draws * _growth(verdict, 1.1, 1.2) / 50.0) * 50)


#: A streamed run is planned for at most this many times the requested draws.
MAX_GROWTH = 8


def _troubled(verdict: dict[str, Any]) -> bool:
    """Failures that more draws of the same run do not mend: divergences, stuck chains."""
    return bool(verdict.get("divergences", 0) or verdict.get("lagging_chains"))


def _more_draws_help(verdict: dict[str, Any]) -> bool:
    """Whether the checks failed on R-hat or ESS, the failures more draws mend.

    A low E-BFMI with R-hat and ESS passing is not: the energy it measures mixes no better
    in a longer run, so the fit stops there and keeps the warning.
    """
    return bool(verdict.get("flagged"))


def geometry_failed(verdict: dict[str, Any]) -> bool:
    """Failures of the posterior's geometry: divergences or an E-BFMI below the threshold.

    ``verdict``: a convergence verdict, or a run's record in ``meta["attempts"]``.

    Neither is mended by more draws of the same parametrisation; under
    ``centered="auto"`` :func:`ckmodel.fitting.fit` samples again with whitened random
    effects (:mod:`ckmodel.population.whitening`).
    """
    bfmi = verdict.get("min_bfmi")
    return bool(verdict.get("divergences", 0)) or (bfmi is not None and bfmi < BFMI_MIN)


def _facts(verdict: dict[str, Any]) -> dict[str, Any]:
    """What a run's record keeps of its convergence verdict (``meta["attempts"]``)."""
    return {"ok": verdict["ok"], "max_rhat": verdict.get("max_rhat"),
            "min_ess_bulk": verdict.get("min_ess_bulk"),
            "divergences": verdict.get("divergences", 0), "min_bfmi": verdict.get("min_bfmi")}


def _complete_draws(trace: Any) -> int:
    """Draws that every chain of a trace in progress has finished (NaN: not yet drawn)."""
    post = trace.posterior
    if not post.data_vars or post.sizes.get("draw", 0) == 0:
        return 0
    var = next(iter(post.data_vars))
    x = post[var].values.reshape(post.sizes["chain"], post.sizes["draw"], -1)[..., 0]
    done = np.isfinite(x)
    # the first not-yet-drawn position of each chain
    first_missing = np.where(done.all(axis=1), done.shape[1], np.argmin(done, axis=1))
    return int(first_missing.min())


def _inspect(bg: Any) -> Any:
    """The trace of a background run so far.

    ArviZ's warning about a trace with fewer draws than chains, which an early look always
    is, is not for the user.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        return bg.inspect()


def _draws_done(bg: Any) -> int | None:
    """Draws after warm-up that every chain of a background run has finished, or None.

    Read from nutpie's raw trace, its ``tuning`` column counted, without building the
    InferenceData that :func:`_inspect` makes (0.3-0.9 s for 4 chains of a 30-subject
    ``blood_marrow`` fit, on cores the chains are using): the stream polls with this and
    builds a trace only when the draws it waits for are there. None where this nutpie
    offers no raw view.
    """
    try:
        _, stats = bg._sampler.inspect().get_arrow_trace()
        return min((s.num_rows - int(np.asarray(s.column("tuning")).sum()) for s in stats),
                   default=0)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _finished(bg: Any) -> bool:
    """Whether a background run has stopped (nutpie answers "not yet" with TimeoutError)."""
    try:
        return bool(bg.is_finished)
    except (TimeoutError, AttributeError):
        return False


def _stream(run: Sampler, *, draws: int, tune: int, seed: int, deadline: float,
            cap: int | None = None, stop_on_geometry: bool = False
            ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """One nutpie run that stops as soon as its first ``n`` draws per chain pass the checks.

    The run is planned for ``cap`` draws (default ``MAX_GROWTH x draws``); the checks are
    made on the first ``n = draws`` draws of every chain, then at the ``n`` that
    :func:`next_checkpoint` asks for, and so on. The first ``n`` draws of a chain do not
    depend on when they were read, so the kept posterior is the same on any machine, unless
    the time budget (``deadline``, a ``time.perf_counter()`` value) ends the run first; the
    requested ``draws`` are always waited for. Divergences or a stuck chain end it too: more
    draws of the same adaptation do not mend them.
    """
    t0 = time.perf_counter()
    cap = max(cap or MAX_GROWTH * draws, draws)
    bg = run.start(draws=cap, tune=tune, seed=seed)
    n, pause, checked = draws, 1.0, []
    last: tuple[Any, int, dict[str, Any]] | None = None
    try:
        while True:
            trace = None
            while True:
                t_read = time.perf_counter()
                finished = _finished(bg)             # asked before the read
                have = _draws_done(bg)
                if have is None or have >= n:        # build the trace only to check it
                    current = _inspect(bg)
                    have = _complete_draws(current)
                read = time.perf_counter() - t_read
                if have >= n or have >= cap:
                    trace = current if have >= n else None
                    break
                if finished:                    # stopped short: no more draws will come
                    raise RuntimeError(f"nutpie stopped after {have} of the {n} draws per "
                                       "chain it was asked for")
                now = time.perf_counter()
                if now > deadline and checked:   # the requested draws are always waited for
                    break
                if have:   # wait about as long as the missing draws take at the pace so far
                    pause = (n - have) * (now - t0) / (tune + have) + 0.2
                else:      # still warming up: look again a little later each time
                    pause = min(pause * 1.5, 5.0)
                time.sleep(min(max(pause, 2.0 * read, 0.2), 10.0))
            if trace is None:
                break
            idata = strip_unconstrained(trace.isel(draw=slice(0, n)))
            verdict = check_convergence(idata, warn=False)
            last = (idata, n, verdict)
            checked.append(n)
            if verdict["ok"] or _troubled(verdict) or not _more_draws_help(verdict) \
                    or n >= cap or (stop_on_geometry and geometry_failed(verdict)):
                break
            nxt = min(next_checkpoint(verdict, n), cap)
            elapsed = time.perf_counter() - t0
            rate = elapsed / (tune + n)               # seconds per iteration, warm-up included
            if time.perf_counter() + rate * (nxt - n) * 1.1 > deadline:
                log.warning("not converged at %d draws per chain; %d would not end within "
                            "the time budget", n, nxt)
                break
            log.info("checks at %d draws per chain not passed (worst R-hat %.3f, lowest bulk "
                     "ESS %.0f): sampling on to %d", n, verdict.get("max_rhat", np.nan),
                     verdict.get("min_ess_bulk", np.nan), nxt)
            n = nxt
    finally:
        bg.cancel()
    assert last is not None     # the first checkpoint is always reached
    idata, n, verdict = last
    entry = {"draws": n, "tune": tune, "seed": seed, "target_accept": run.target_accept,
             "seconds": round(time.perf_counter() - t0, 2), **_facts(verdict),
             "checked_at": checked, "planned": cap}
    return idata, entry, verdict


def run_until(run: Sampler, *, draws: int, tune: int, seed: int, budget: float | None,
              stop_on_geometry: bool = False) -> tuple[Any, list[dict[str, Any]]]:
    """Sample; with a ``budget`` (seconds), run longer until the checks pass.

    nutpie streams (:func:`_stream`): one run samples on until its draws pass the checks.
    Other samplers run again, longer (:func:`next_run_length`), when at the pace of the last
    run the next one would end within the budget. After divergences or a stuck chain the
    chains start again with twice the warm-up and a target acceptance halfway to 1 (0.9 ->
    0.95 -> 0.975). Each run has its own seed (``seed + attempt``), recorded, so the whole
    sequence is reproducible. With ``stop_on_geometry``, a run with divergences or a low
    E-BFMI (:func:`geometry_failed`) ends the sequence at once, for the caller to change the
    parametrisation.
    """
    attempts: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    # a stream reads every chain at the same draw, so the chains must run side by side
    streamed = (budget is not None and run.sampler == "nutpie"
                and (run.cores is None or run.cores >= run.chains))
    requested, k = draws, 0
    while True:
        t0 = time.perf_counter()
        if streamed:
            idata, entry, verdict = _stream(run, draws=draws, tune=tune, seed=seed + k,
                                            deadline=t_start + float(budget or 0),
                                            cap=max(MAX_GROWTH * requested, 4 * draws),
                                            stop_on_geometry=stop_on_geometry)
            attempts.append(entry)
            took, kept = entry["seconds"], entry["draws"]
        else:
            idata = strip_unconstrained(run(draws=draws, tune=tune, seed=seed + k))
            took, kept = time.perf_counter() - t0, draws
            entry = {"draws": draws, "tune": tune, "seed": seed + k,
                     "target_accept": run.target_accept, "seconds": round(took, 2)}
            attempts.append(entry)
            if budget is None:
                return idata, attempts
            verdict = check_convergence(idata, warn=False)
            entry.update(_facts(verdict))
        if not verdict["ok"] and stop_on_geometry and geometry_failed(verdict):
            return idata, attempts
        if verdict["ok"]:
            if k or kept > draws:
                # news, not a problem: the fit ran longer than asked and passed its checks
                log.info("converged with %d tuning steps and %d draws per chain (target "
                         "acceptance %.3g, %d run(s))", tune, kept, run.target_accept, k + 1)
            return idata, attempts
        if not _troubled(verdict) and not _more_draws_help(verdict):
            log.warning("R-hat and ESS pass but %s: more draws would not mend it, so the "
                        "fit stops here", "; ".join(verdict["problems"]))
            return idata, attempts
        capped = streamed and kept >= entry.get("planned", np.inf)
        if streamed and not _troubled(verdict) and not capped:
            return idata, attempts          # the stream ran as long as the budget allowed
        if _troubled(verdict):
            # a new run needs as many draws as the last one did
            new_draws, new_tune = kept, 2 * tune
        elif capped:                        # the planned draws were not enough: plan more
            new_draws, new_tune = kept, tune
        else:
            new_draws, new_tune = next_run_length(verdict, draws, tune)
        spent = time.perf_counter() - t_start
        expected = took * (new_draws + new_tune) / max(kept + tune, 1)
        if spent + 1.1 * expected > float(budget or 0):
            log.warning("not converged within the budget of %.0f s (%d run(s), %.0f s; the "
                        "next, %d + %d steps per chain, would take about %.0f s): the last "
                        "run (%d tuning steps, %d draws per chain) is kept", budget, k + 1,
                        spent, new_tune, new_draws, expected, tune, kept)
            return idata, attempts
        if _troubled(verdict):
            run.target_accept = 1.0 - (1.0 - run.target_accept) / 2.0
        log.warning("not converged (worst R-hat %.3f, lowest bulk ESS %.0f, %d divergences): "
                    "running again with %d tuning steps, %d draws per chain, target "
                    "acceptance %.3g", entry["max_rhat"] or float("nan"),
                    entry["min_ess_bulk"] or float("nan"), entry["divergences"], new_tune,
                    new_draws, run.target_accept)
        draws, tune, k = new_draws, new_tune, k + 1
