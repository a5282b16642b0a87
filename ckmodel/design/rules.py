"""Rule-based dose escalation: the 3+3 design and accelerated titration.

Both rules are immutable value objects; ``rule.decide(history, n_levels)`` is a pure function of
the cohorts treated so far (see :func:`~ckmodel.design.next_decision`). Use
``dataclasses.replace`` to get a variant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from ckmodel.design.records import (
    PHASE_3PLUS3,
    PHASE_ATD,
    Cohort,
    Decision,
    EscalationRule,
    Step,
    level_tallies,
)

__all__ = ["ThreePlusThree", "AcceleratedTitration", "ToxicityTrigger"]

Trigger = Literal["dlt"] | Callable[[Sequence[Cohort]], bool]


@dataclass(frozen=True)
class ThreePlusThree:
    """The standard 3+3 dose-escalation rule with de-escalation.

    Cohorts of three, evaluated on the pooled patients and DLTs at the current level (``d`` DLTs
    out of ``n`` patients, every phase counted, so an accelerated-titration patient at a level
    counts towards its 3 or 6):

    ======================  ========================================================================
    at the current level    decision
    ======================  ========================================================================
    ``n < 3``, ``d <= 1``   ``STAY``: treat ``3 - n`` more to complete a cohort of 3
    0/3                     ``ESCALATE`` one level (cohort of 3)
    1/3                     ``STAY``: treat 3 more at the same level (expand to 6)
    <= 1/6                  ``ESCALATE`` one level
    ``d >= 2`` (of 3 or 6)  the level exceeds the MTD; go to the level just below it (see below)
    ======================  ========================================================================

    A level with two or more DLTs is never treated again, nor any level above it. When the
    current level exceeds the MTD, the candidate MTD is the next lower level ``m``:

    - no lower level (the lowest dose is too toxic): ``STOP_TOO_TOXIC``, no MTD;
    - ``m`` already has <= 1/6: ``STOP_MTD_FOUND`` with MTD ``m``;
    - ``m`` has 0/3 and ``six_at_mtd`` (default): ``DE_ESCALATE`` to ``m`` with 3 more patients;
      if ``m`` then has <= 1/6 it is the MTD, otherwise it also exceeds the MTD and the rule
      de-escalates again. With ``six_at_mtd=False`` a 0/3 level below a toxic one is declared
      the MTD at once (Storer's original design A).

    When the top level is cleared (0/3 or <= 1/6) it is declared the MTD (reason: MTD not
    reached within the dose range); with ``six_at_top=True`` a top level at 0/3 is first
    expanded to 6 and declared only at <= 1/6. Hence the MTD is the highest level with at most
    one DLT in six patients (or 0/3 where a flag allows it) whose next level has two or more
    DLTs; the rule treats at most 6 patients per level.

    Parameters
    ----------
    six_at_mtd : bool
        Require six patients at a level below a toxic level before declaring it the MTD.
    six_at_top : bool
        Require six patients at the top level before declaring it the MTD.
    start_level : int
        Level of the first cohort when the 3+3 starts the trial (ignored when it follows an
        accelerated titration).

    References
    ----------
    .. [1] Storer BE. Design and analysis of phase I clinical trials. Biometrics
       1989;45:925-937 (design "A").
    .. [2] Lin Y, Shih WJ. Statistical properties of the traditional algorithm-based designs for
       phase I cancer clinical trials. Biostatistics 2001;2:203-215 (3+3 with de-escalation).
    .. [3] Le Tourneau C, Lee JJ, Siu LL. Dose escalation methods in phase I cancer clinical
       trials. J Natl Cancer Inst 2009;101:708-720.

    Examples
    --------
    >>> from ckmodel.design import Cohort, next_decision
    >>> rule = ThreePlusThree()
    >>> history = [Cohort(0, 3, 0), Cohort(1, 3, 1), Cohort(1, 3, 0), Cohort(2, 3, 2)]
    >>> step = next_decision(history, rule, n_levels=4)
    >>> step.decision, step.mtd
    (<Decision.STOP_MTD_FOUND: 'stop_mtd_found'>, 1)
    """

    six_at_mtd: bool = True
    six_at_top: bool = False
    start_level: int = 0

    def __post_init__(self) -> None:
        if self.start_level < 0:
            raise ValueError(f"start_level must be >= 0, got {self.start_level}")

    @property
    def name(self) -> str:
        """Short label of the design."""
        return "3+3"

    @property
    def tally_sufficient(self) -> bool:
        """Decisions depend on the history only through :func:`~ckmodel.design.tally_key`."""
        return True

    def max_sample_size(self, n_levels: int) -> int:
        """At most 6 patients per level."""
        return 6 * n_levels

    def decide(self, history: Sequence[Cohort], n_levels: int) -> Step:
        """Next step of the 3+3 on a history; see the class docstring for the rule."""
        if not history:
            if self.start_level >= n_levels:
                raise ValueError(f"start_level {self.start_level} is outside {n_levels} levels")
            return Step(
                Decision.START,
                f"3+3: start with 3 patients at level {self.start_level}",
                next_level=self.start_level,
                cohort_size=3,
                phase=PHASE_3PLUS3,
            )
        n, d = level_tallies(history, n_levels)
        toxic = [k for k in range(n_levels) if d[k] >= 2]
        lowest_toxic = toxic[0] if toxic else n_levels
        c = history[-1].level
        here = f"level {c}: {d[c]}/{n[c]} DLT"

        if d[c] >= 2:
            return self._below_toxic(lowest_toxic, n, d, f"{here} exceeds the MTD")
        if n[c] < 3:
            return self._stay(
                c,
                3 - n[c],
                f"{here} -> treat {3 - n[c]} more at level {c} (complete a cohort of 3)",
            )
        if d[c] == 1 and n[c] < 6:
            return self._stay(
                c, 6 - n[c], f"{here} -> treat {6 - n[c]} more at level {c} (expand to 6)"
            )
        # level c is cleared: 0/3 or <= 1/6
        if c + 1 < min(lowest_toxic, n_levels):
            return Step(
                Decision.ESCALATE,
                f"{here} -> escalate to level {c + 1}",
                next_level=c + 1,
                cohort_size=3,
                phase=PHASE_3PLUS3,
            )
        if c + 1 >= n_levels:
            require_six, context = self.six_at_top, "the top level"
        else:
            require_six, context = self.six_at_mtd, f"level {c + 1} exceeds the MTD"
        if _qualifies(n[c], d[c], require_six):
            suffix = " (MTD not reached within the dose range)" if c + 1 >= n_levels else ""
            return Step(
                Decision.STOP_MTD_FOUND,
                f"{here} and {context} -> MTD = level {c}{suffix}",
                mtd=c,
            )
        return self._stay(
            c,
            6 - n[c],
            f"{here} and {context} -> treat {6 - n[c]} more at level {c} to confirm it with 6",
        )

    def _stay(self, level: int, size: int, reason: str) -> Step:
        return Step(
            Decision.STAY, reason, next_level=level, cohort_size=int(size), phase=PHASE_3PLUS3
        )

    def _below_toxic(self, lowest_toxic: int, n: np.ndarray, d: np.ndarray, why: str) -> Step:
        m = lowest_toxic - 1
        if m < 0:
            return Step(
                Decision.STOP_TOO_TOXIC,
                f"{why}; level 0 is the lowest dose -> stop, no MTD",
            )
        n_m, d_m = int(n[m]), int(d[m])
        if _qualifies(n_m, d_m, self.six_at_mtd):
            return Step(
                Decision.STOP_MTD_FOUND,
                f"{why}; level {m} has {d_m}/{n_m} DLT -> MTD = level {m}",
                mtd=m,
            )
        size = 3 - n_m if n_m < 3 else 6 - n_m
        return Step(
            Decision.DE_ESCALATE,
            f"{why} -> de-escalate: treat {size} more at level {m} ({d_m}/{n_m} DLT so far)",
            next_level=m,
            cohort_size=size,
            phase=PHASE_3PLUS3,
        )


def _qualifies(n: int, d: int, require_six: bool) -> bool:
    """Whether a level with ``d`` DLTs in ``n`` patients can be declared the MTD."""
    return (n >= 6 and d <= 1) or (not require_six and n >= 3 and d == 0)


@dataclass(frozen=True)
class ToxicityTrigger:
    """Switch rule for accelerated titration based on toxicity grades.

    Fires when any accelerated-titration patient had a DLT (if ``on_dlt``), or when
    ``n_events`` accelerated-titration patients had a worst toxicity grade ``>= min_grade``.
    Simon et al.'s design 2 is ``ToxicityTrigger(min_grade=2, n_events=2)``; "first grade >= 2
    toxicity" is the default. Requires ``Cohort.grades`` (the DLT sampler returns grades).

    Parameters
    ----------
    min_grade : int
        Lowest CTCAE grade that counts as an event.
    n_events : int
        Number of patients with such an event that triggers the switch.
    on_dlt : bool
        Also fire on the first DLT, whatever its recorded grade.

    Examples
    --------
    >>> from ckmodel.design import Cohort
    >>> trigger = ToxicityTrigger(min_grade=2, n_events=2)
    >>> trigger([Cohort(0, 1, 0, "ATD", (2,)), Cohort(1, 1, 0, "ATD", (1,))])
    False
    >>> trigger([Cohort(0, 1, 0, "ATD", (2,)), Cohort(1, 1, 0, "ATD", (2,))])
    True
    """

    min_grade: int = 2
    n_events: int = 1
    on_dlt: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.min_grade <= 5:
            raise ValueError(f"min_grade must be between 1 and 5, got {self.min_grade}")
        if self.n_events < 1:
            raise ValueError(f"n_events must be >= 1, got {self.n_events}")

    def __call__(self, atd_history: Sequence[Cohort]) -> bool:
        """Whether the accelerated-titration cohorts so far trigger the switch."""
        if self.on_dlt and any(c.n_dlt > 0 for c in atd_history):
            return True
        events = 0
        for cohort in atd_history:
            if cohort.grades is None:
                raise ValueError(
                    "ToxicityTrigger needs toxicity grades: make the DLT sampler return "
                    "(dlt, grade) arrays so that cohorts carry grades"
                )
            events += sum(g >= self.min_grade for g in cohort.grades)
        return events >= self.n_events

    def describe(self) -> str:
        """Short text for decision reasons."""
        what = f"{self.n_events} patient(s) with grade >= {self.min_grade} toxicity"
        return f"first DLT or {what}" if self.on_dlt else what


@dataclass(frozen=True)
class AcceleratedTitration:
    """Accelerated titration (single-patient cohorts) followed by another rule, by default 3+3.

    Adapted from Simon et al.'s design 2 for a single-infusion cell therapy (no intra-patient
    escalation): one patient per level, escalating one level per patient, until the trigger
    fires. The trigger is evaluated after each accelerated-titration patient on all of them:

    - ``"dlt"`` (default): the first DLT;
    - a :class:`ToxicityTrigger`, e.g. the first grade >= 2 toxicity, or Simon's "first DLT or
      second grade 2";
    - any callable ``trigger(atd_history) -> bool``.

    When it fires the trial switches to ``then`` at the same level, and the patient who triggered
    the switch counts at that level: under the default 3+3 the level is completed to 3 patients
    (2 more) and the 3+3 continues from there (1/3 -> expand to 6, >= 2/3 -> de-escalate, ...).
    The single accelerated-titration patients at lower levels count too if the 3+3 later
    de-escalates to their level (it completes them to 3, then 6). If the top level is reached
    without a trigger, the trial switches to ``then`` at the top level, so that the MTD is never
    declared on one patient. After the switch every decision is ``then``'s.

    Parameters
    ----------
    then : EscalationRule
        Rule that takes over after the switch; it sees the whole history (all phases).
    trigger : {"dlt"} or callable
        When to switch (see above).
    start_level : int
        Level of the first patient.

    References
    ----------
    .. [1] Simon R, Freidlin B, Rubinstein L, Arbuck SG, Collins J, Christian MC. Accelerated
       titration designs for phase I clinical trials in oncology. J Natl Cancer Inst
       1997;89:1138-1147.

    Examples
    --------
    >>> from ckmodel.design import Cohort, ThreePlusThree, next_decision
    >>> rule = AcceleratedTitration(then=ThreePlusThree())
    >>> history = [Cohort(0, 1, 0, "ATD"), Cohort(1, 1, 0, "ATD"), Cohort(2, 1, 1, "ATD")]
    >>> step = next_decision(history, rule, n_levels=5)
    >>> step.decision, step.next_level, step.cohort_size, step.phase
    (<Decision.SWITCH: 'switch'>, 2, 2, '3+3')
    """

    then: EscalationRule = field(default_factory=ThreePlusThree)
    trigger: Trigger = "dlt"
    start_level: int = 0

    def __post_init__(self) -> None:
        if self.start_level < 0:
            raise ValueError(f"start_level must be >= 0, got {self.start_level}")
        if self.trigger != "dlt" and not callable(self.trigger):
            raise ValueError(f"trigger must be 'dlt' or a callable, got {self.trigger!r}")

    @property
    def name(self) -> str:
        """Short label of the design."""
        return f"ATD -> {self.then.name}"

    @property
    def tally_sufficient(self) -> bool:
        """True with the ``"dlt"`` trigger and a tally-sufficient follow-on rule."""
        return self.trigger == "dlt" and bool(getattr(self.then, "tally_sufficient", False))

    def max_sample_size(self, n_levels: int) -> int:
        """Follow-on rule's bound plus one titration patient per level."""
        return self.then.max_sample_size(n_levels) + n_levels

    def _fires(self, atd_history: Sequence[Cohort]) -> bool:
        if self.trigger == "dlt":
            return any(c.n_dlt > 0 for c in atd_history)
        return bool(self.trigger(atd_history))  # type: ignore[operator]

    def _trigger_text(self) -> str:
        if self.trigger == "dlt":
            return "first DLT"
        describe = getattr(self.trigger, "describe", None)
        return describe() if callable(describe) else "trigger"

    def decide(self, history: Sequence[Cohort], n_levels: int) -> Step:
        """Next step: titrate, switch, or defer to ``then``; see the class docstring."""
        if not history:
            if self.start_level >= n_levels:
                raise ValueError(f"start_level {self.start_level} is outside {n_levels} levels")
            return Step(
                Decision.START,
                f"ATD: start with 1 patient at level {self.start_level}",
                next_level=self.start_level,
                cohort_size=1,
                phase=PHASE_ATD,
            )
        last = history[-1]
        if last.phase != PHASE_ATD:
            return self.then.decide(history, n_levels)
        if any(c.phase != PHASE_ATD for c in history):
            raise ValueError("an ATD cohort follows the switch to the follow-on rule")
        c = last.level
        here = f"level {c}: {last.n_dlt}/{last.n} DLT"
        if self._fires(history):
            why = f"ATD: {here}, {self._trigger_text()}"
        elif c + 1 < n_levels:
            return Step(
                Decision.ESCALATE,
                f"ATD: {here}, no trigger -> escalate to level {c + 1} (1 patient)",
                next_level=c + 1,
                cohort_size=1,
                phase=PHASE_ATD,
            )
        else:
            why = f"ATD: {here}, top level reached without a trigger"
        sub = self.then.decide(history, n_levels)
        reason = f"{why} -> switch to {self.then.name}: {sub.reason}"
        if sub.is_stop:
            return replace(sub, reason=reason)
        return replace(sub, decision=Decision.SWITCH, reason=reason)
