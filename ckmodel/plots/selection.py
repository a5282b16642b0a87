"""Dose-selection figure: posterior probabilities and utility per candidate dose."""

from __future__ import annotations

from typing import Any

from ckmodel.plots._style import GREY, PALETTE, grid

__all__ = ["plot_selection"]


def plot_selection(selection: Any, *, level: float | None = None) -> Any:
    """Per candidate dose: each endpoint's population rate, then the utility.

    Left: posterior mean and credible band of every endpoint's rate (toxicity dashed), the
    target toxicity rate and the doses excluded by overdose control (shaded). Right: the
    utility with its band; the recommended (overdose-controlled) dose and the dose of
    highest expected utility marked. Doses on a log axis in the model's amount unit.

    Parameters
    ----------
    selection : DoseSelection
        From :func:`ckmodel.select_dose`.
    level : float, optional
        Only for the caption: the bands are those of ``selection.table`` (its ``level``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    t = selection.table
    s = selection.settings
    lvl = s.get("level", 0.95) if level is None else level
    dose = t["DOSE"].to_numpy(float)
    unit = s.get("amount_unit", "")
    fig, axes = grid(1, 2, panel=(5.0, 3.6))
    ax, au = axes[0, 0], axes[0, 1]
    labels = list(s.get("endpoints", []))
    tox = s.get("toxicity")
    for i, lab in enumerate(labels):
        col = PALETTE[i % len(PALETTE)]
        style = "--" if lab == tox or lab.startswith(("DLT", "CRS", "ICANS")) else "-"
        ax.plot(dose, t[f"P_{lab}"], style, marker="o", color=col, label=f"P({lab})")
        ax.fill_between(dose, t[f"P_{lab}_LOWER"], t[f"P_{lab}_UPPER"], color=col, alpha=0.18,
                        lw=0)
    if tox is not None:
        ax.axhline(s["target"], color=GREY, lw=0.9, ls=":", label=f"target {s['target']:g}")
        out = t["ADMISSIBLE"].to_numpy() == 0
        for j, d in enumerate(dose[out]):
            for a in (ax, au):
                a.axvspan(d / 1.25, d * 1.25, color="0.85", alpha=0.6, lw=0,
                          label="excluded (overdose)" if j == 0 and a is ax else None)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"population rate (mean, {lvl:.0%} CrI)")
    au.plot(dose, t["UTILITY"], marker="o", color=PALETTE[0])
    au.fill_between(dose, t["UTILITY_LOWER"], t["UTILITY_UPPER"], color=PALETTE[0], alpha=0.2,
                    lw=0)
    au.set_ylabel(f"utility = {s.get('utility', '')}", fontsize=8)
    if selection.recommended is not None:
        for a in (ax, au):
            a.axvline(selection.recommended, color=PALETTE[1], lw=1.2,
                      label="overdose-controlled dose" if a is ax else None)
    if selection.best is not None:
        au.axvline(selection.best, color=PALETTE[2], lw=1.2, ls="-.",
                   label="highest expected utility")
    for a in (ax, au):
        a.set_xscale("log")
        a.set_xticks(dose)
        a.set_xticklabels([f"{d:g}" for d in dose])
        a.minorticks_off()
        a.set_xlabel(f"dose ({unit})" if unit else "dose")
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    if selection.best is not None:
        au.legend(fontsize=7, frameon=False, loc="best")
    ax.set_title("Toxicity and response", fontsize=9)
    au.set_title("Utility", fontsize=9)
    return fig
