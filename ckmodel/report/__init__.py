"""The scripted posterior report of a fit: one self-contained HTML file, or Markdown.

:func:`build_report` lays a fit (and, when given, outcomes, exposure, exposure-response fits
and a dose selection) out as a format-free :class:`~ckmodel.report.document.Report`;
:func:`save_report` writes it as HTML (:mod:`ckmodel.report.html`) or Markdown
(:mod:`ckmodel.report.markdown`), atomically; :func:`write_report` does both.
``ckmodel report FIT -o report.html`` is the command-line form.

The order is the reader's: the convergence verdict first (a fit with problems says so before
any estimate), then the data and NCA, the model, estimates, priors against posteriors,
sampler diagnostics, goodness of fit, VPC/pcVPC, individual fits, then the sections of the
results given, and provenance last. The same fit and seed give the same bytes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ckmodel.report.document import Report, Section, as_blocks

__all__ = ["build_report", "save_report", "write_report", "resolve_stratify", "REPORT_FORMATS"]

#: Formats of :func:`write_report`, by file suffix.
REPORT_FORMATS = {".html": "html", ".htm": "html", ".md": "md"}


def _versions() -> dict[str, str]:
    from ckmodel.fitting.result import package_versions

    return package_versions()


def build_report(fit: Any, *, seed: int = 1, n_sim: int = 200, bins: Any = None,
                 outcomes: Any = None, exposure: Any = None, responses: Sequence[Any] = (),
                 selection: Any = None, stratify: str | None = "auto",
                 title: str | None = None,
                 extra: dict[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None,
                 workers: int | None = None) -> Report:
    """Lay out the report of ``fit`` (see the module docstring for the order).

    Parameters
    ----------
    fit : Fit
        A fit with its data (as :func:`ckmodel.load_fit` reads it).
    seed : int
        Seed of the replicates behind NPDE, VPC and the fitted bands, and of the prior draws.
    n_sim : int
        Replicates of the trial (new virtual subjects) for NPDE and the VPCs.
    bins : int or sequence of float, optional
        VPC bins (number of quantile bins or edges in the model's time unit); default one
        bin per nominal time.
    stratify : str or None
        Subject column that splits the NCA, GOF colours, VPC panels and endpoint tables;
        ``"auto"`` (default) takes ``DOSE_LEVEL``, else ``DOSE``, when it varies; None
        pools everyone.

    Other Parameters
    ----------------
    outcomes : pandas.DataFrame, optional
        Outcomes table indexed by ID; default the fit's data's outcomes, if any. Gives the
        endpoints section.
    exposure : xarray.Dataset or pandas.DataFrame, optional
        :func:`ckmodel.exposure.exposure_draws` (with the NCA comparison) or its table.
    responses : sequence of ResponseFit
        Exposure-response fits (:func:`ckmodel.response.fit_response`).
    selection : DoseSelection or pandas.DataFrame, optional
        A dose selection (:func:`ckmodel.select.select_dose`).
    title : str, optional
        Report title (default "Posterior report: <model>").
    extra : dict of str to content, optional
        More sections, title to content (text, DataFrames, matplotlib figures).
    progress : callable, optional
        Called with the name of each section as it starts (command-line progress).
    workers : int, optional
        Processes that draw the figures while the report is built (default 2 on a machine
        with more than one core; 1 draws them here). The bytes are the same either way.

    Returns
    -------
    Report
    """
    from ckmodel.diagnostics import simulate_replicates
    from ckmodel.report import extras as X
    from ckmodel.report import sections as S
    from ckmodel.report.drawing import background_rendering

    if fit.data is None:
        raise ValueError("the fit holds no data; a report needs the data it was fitted to")
    if isinstance(n_sim, bool) or int(n_sim) < 20:
        raise ValueError(f"n_sim must be an integer >= 20 (replicates for the VPC bands), "
                         f"got {n_sim!r}")
    by = resolve_stratify(fit, stratify)
    say = progress or (lambda _name: None)
    # figures are drawn in worker processes while the next sections are computed
    with background_rendering(workers) as renderer:
        sections: list[Section] = []

        def add(name: str, make: Callable[[], Section]) -> None:
            say(name)
            sections.append(make())

        add("verdict", lambda: S.verdict_section(fit))
        add("data", lambda: S.data_section(fit))
        add("NCA", lambda: S.nca_section(fit, by=by, seed=seed, n_sim=n_sim))
        add("model", lambda: S.model_section(fit))
        add("estimates", lambda: S.estimates_section(fit))
        add("priors", lambda: S.priors_section(fit, seed=seed))
        add("sampler", lambda: S.sampler_section(fit))
        say("replicates")
        reps = simulate_replicates(fit, n_sim=int(n_sim), seed=seed)
        add("GOF", lambda: S.gof_section(fit, reps, by=by, seed=seed))
        add("VPC", lambda: S.vpc_section(fit, reps, by=by, bins=bins))
        add("individual fits", lambda: S.individual_section(fit))
        out = outcomes if outcomes is not None else getattr(fit.data, "outcomes", None)
        if out is not None and len(out):
            add("endpoints", lambda: X.endpoints_section(fit.data, outcomes, by=by))
        if exposure is not None:
            def exposure_part() -> Section:
                from ckmodel.exposure import compare_with_nca

                cmp = (None if isinstance(exposure, pd.DataFrame)
                       else compare_with_nca(fit, exposure))
                return X.exposure_section(exposure, nca=cmp)

            add("exposure", exposure_part)
        if responses:
            add("exposure-response", lambda: X.response_section(list(responses)))
        if selection is not None:
            add("dose selection", lambda: X.selection_section(selection))
        for k, (head, content) in enumerate((extra or {}).items(), start=1):
            sections.append(Section(f"extra-{k}", str(head), as_blocks(content, name=f"extra-{k}")))
        if renderer is not None:
            sections = list(renderer.resolve(tuple(sections)))
    meta = {"seed": int(seed), "n_sim": int(n_sim), "versions": _versions()}
    sections.append(S.provenance_section(fit, meta))
    m = fit.meta
    subtitle = (f"Model {fit.spec.name}; {m.get('n_subjects')} subjects, {m.get('n_obs')} "
                f"records ({', '.join(m.get('analytes') or [])})",
                f"Data {m.get('data_source') or '-'}; sampler {m.get('sampler')}, fit seed "
                f"{m.get('seed')}, report seed {seed}")
    return Report(title=title or f"Posterior report: {fit.spec.name}", subtitle=subtitle,
                  sections=tuple(sections), meta=meta)


def resolve_stratify(fit: Any, stratify: str | None) -> str | None:
    """The report's stratification column: checked against the fit's subjects, or auto.

    Raises
    ------
    ValueError
        When ``stratify`` is not a subject-level column of the fit's data (the message lists
        those there are).
    """
    from ckmodel.report.sections import stratify_column

    if stratify == "auto":
        return stratify_column(fit)
    if stratify is None:
        return None
    cov = fit.data.covariates
    if stratify not in cov.columns:
        raise ValueError(f"stratify: {stratify!r} is not a subject-level column of the fit's "
                         f"data; columns: {', '.join(map(str, cov.columns))}")
    return stratify


def _write_markdown(report: Report, path: Path) -> None:
    from ckmodel.files import atomic_write
    from ckmodel.report.markdown import figure_folder, to_markdown

    folder = figure_folder(path.stem)
    target = path.parent / folder
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.", dir=path.parent))
    try:
        for f in report.figures:
            (tmp / f"{f.name}{f.suffix}").write_bytes(f.data)
        old = None
        if target.exists():
            old = path.parent / f".{folder}.old.{os.getpid()}"
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    text = to_markdown(report, folder)
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def _format_of(path: Path, format: str | None) -> str:
    fmt = format or REPORT_FORMATS.get(path.suffix.lower())
    if fmt not in ("html", "md"):
        raise ValueError(f"{path}: a report is written as .html or .md (got "
                         f"{format or path.suffix or 'no suffix'!r})")
    return fmt


def save_report(report: Report, path: str | os.PathLike[str], *,
                format: str | None = None) -> Path:
    """Write a built :class:`Report` to ``path``, atomically (HTML or Markdown).

    Parameters
    ----------
    report : Report
        From :func:`build_report` (inspect or extend it first if you like).
    path : path-like
        ``.html`` (one self-contained file) or ``.md`` (figures in ``<stem>_files/``).
    format : {"html", "md"}, optional
        Default from the suffix of ``path``.

    Returns
    -------
    pathlib.Path
        The file written. A failure leaves any earlier report at ``path`` as it was.
    """
    from ckmodel.files import atomic_write
    from ckmodel.report import html

    path = Path(path)
    if _format_of(path, format) == "html":
        text = html.to_html(report)
        atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    else:
        _write_markdown(report, path)
    return path


def write_report(fit: Any, path: str | os.PathLike[str], *, format: str | None = None,
                 **options: Any) -> Path:
    """Build the report of ``fit`` and write it to ``path``, atomically.

    Parameters
    ----------
    fit : Fit
        The fit, with its data.
    path : path-like
        Output file: ``.html`` (one self-contained file) or ``.md`` (Markdown, figures in the
        folder ``<stem>_files/`` beside it). Checked before any work.
    format : {"html", "md"}, optional
        Default from the suffix of ``path``.
    **options
        Passed to :func:`build_report` (``seed``, ``n_sim``, ``bins``, ``outcomes``,
        ``exposure``, ``responses``, ``selection``, ``stratify``, ``title``, ``extra``,
        ``progress``).

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> write_report(fit, "report.html", seed=1)  # doctest: +SKIP
    """
    fmt = _format_of(Path(path), format)
    return save_report(build_report(fit, **options), path, format=fmt)
