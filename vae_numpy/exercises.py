"""Checkers for the chapters' numerical exercises.

A chapter's checker should accept a right answer in any sensible form, tell a close
answer to give more digits, answer a likely mistake with a hint aimed at it, never
crash on an unexpected type, and never give the answer away. :class:`NumberCheck`
does all of that from a small description that is also plain JSON
(:meth:`NumberCheck.to_dict`), so the same rules can run in a page with no kernel.

>>> check = NumberCheck(1.6, digits=2, hints=[(1.5, "That is mu: add sigma * eps.")])
>>> check(1.6)
Right.
True
>>> check(np.array([1.5]))
Not quite. That is mu: add sigma * eps.
False
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def as_number(answer) -> tuple[float | None, str]:
    """``(value, "")`` for an answer that is one number, else ``(None, why not)``.

    Accepts int, float, NumPy scalars, and 0-d or 1-element arrays or lists; rejects
    (without raising) None, strings, booleans, several numbers and non-finite values.
    """
    if answer is None:
        return None, "Not answered yet: set the answer variable to a number."
    if isinstance(answer, (bool, np.bool_)):
        return None, f"Expected a number, got the boolean {answer!r}."
    if isinstance(answer, (str, bytes)):
        return None, f"Expected a number, got the text {answer!r}; drop the quotes."
    try:
        arr = np.asarray(answer, dtype=np.float64)
    except (TypeError, ValueError):
        return None, f"Expected a number, got {type(answer).__name__}."
    if arr.size != 1:
        return None, f"Expected one number, got {arr.size} (shape {arr.shape})."
    value = float(arr.reshape(()))
    if not math.isfinite(value):
        return None, f"Got {value}: the computation overflowed or divided by zero somewhere."
    return value, ""


@dataclass
class NumberCheck:
    """Check a numerical answer against ``want``.

    Parameters
    ----------
    want : float
        The right answer.
    rtol, atol : float
        An answer within ``max(atol, rtol * |want|)`` of ``want`` is right.
    digits : int, optional
        The significant digits the text shows: ``want`` rounded to that many digits
        (or more) is right too.
    hints : sequence of (value, message)
        What a likely mistake gives, and the hint for it; an answer within
        ``hint_rtol`` (relative) of one or more values gets the nearest one's message.
    close_rtol : float
        An answer this close to ``want`` that is not right gets "right method, give
        more digits".
    success : str
        Said after "Right." (say why it is right; never a new number).
    fallback : str
        Said for any other wrong answer.
    """

    want: float
    rtol: float = 1e-3
    atol: float = 0.0
    digits: int | None = None
    hints: Sequence[tuple[float, str]] = field(default_factory=tuple)
    hint_rtol: float = 1e-2
    close_rtol: float = 0.05
    success: str = ""
    fallback: str = "Check each step against the equations above."

    def judge(self, answer) -> tuple[bool, str]:
        """``(right, message)`` without printing."""
        value, why = as_number(answer)
        if value is None:
            return False, why
        want = float(self.want)
        if abs(value - want) <= max(self.atol, self.rtol * abs(want)):
            return True, " ".join(s for s in ("Right.", self.success) if s)
        if self.digits is not None:
            # want rounded to the digits the text shows (a typed 0.100 arrives as 0.1)
            if math.isclose(value, _round_significant(want, self.digits), rel_tol=1e-12,
                            abs_tol=1e-15):
                return True, " ".join(s for s in ("Right.", self.success) if s)
            shown = _decimals(value)
            if shown is not None and _significant(value, shown) >= self.digits and \
                    math.isclose(value, round(want, shown), rel_tol=1e-12, abs_tol=1e-15):
                return True, " ".join(s for s in ("Right.", self.success) if s)
        # the nearest of the likely mistakes within reach, so two close ones are not confused
        near = [(abs(value - wrong), message) for wrong, message in self.hints
                if abs(value - wrong) <= self.hint_rtol * abs(wrong) or value == wrong]
        if near:
            return False, f"Not quite. {min(near, key=lambda t: t[0])[1]}"
        if abs(value - want) <= self.close_rtol * abs(want):
            shown = _decimals(value)
            if self.digits and shown is not None and \
                    _significant(value, shown) >= self.digits:
                # enough digits, but not the right ones: more digits will not help
                return False, ("Close, but not right: check the last step and the "
                               "rounding.")
            more = f" (at least {self.digits} significant)" if self.digits else ""
            return False, f"Close: right method, but give more digits{more}."
        return False, f"Not quite. {self.fallback}"

    def __call__(self, answer) -> bool:
        right, message = self.judge(answer)
        print(message)
        return right

    def to_dict(self) -> dict:
        """The check as JSON-ready data, for an answer box in the static page."""
        return {"want": float(self.want), "rtol": self.rtol, "atol": self.atol,
                "digits": self.digits, "hints": [[float(v), m] for v, m in self.hints],
                "hint_rtol": self.hint_rtol, "close_rtol": self.close_rtol,
                "success": self.success, "fallback": self.fallback}


def _round_significant(x: float, digits: int) -> float:
    """``x`` rounded to ``digits`` significant digits."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def _decimals(value: float) -> int | None:
    """How many decimals ``repr(value)`` shows (an answer typed as 1.25 shows 2)."""
    text = repr(float(value))
    if "e" in text or "inf" in text or "nan" in text:
        return None
    return len(text.split(".")[1].rstrip("0")) if "." in text else 0


def _significant(value: float, decimals: int) -> int:
    """Significant digits of ``value`` written with ``decimals`` decimals."""
    if value == 0:
        return 1
    return max(1, math.floor(math.log10(abs(value))) + 1 + decimals)
