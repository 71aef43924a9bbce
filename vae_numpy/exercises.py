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
from decimal import Decimal

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
        raw = np.asarray(answer)              # one conversion, read for its kind below
        if raw.dtype.kind in ("U", "S"):
            return None, "Expected a number, got text inside a list or array; drop the quotes."
        if raw.dtype.kind == "b":
            return None, "Expected a number, got a boolean inside a list or array."
        arr = raw.astype(np.float64)
    except (TypeError, ValueError):           # a dict, an object, a ragged list
        return None, f"Expected a number, got {type(answer).__name__}."
    if arr.size != 1:
        return None, f"Expected one number, got {arr.size} (shape {arr.shape})."
    if raw.dtype in (np.float32, np.float16):
        # np.float32(1.59) is 1.590000033... as a float64; its own shortest form is 1.59,
        # which is what the reader rounded to
        value = float(str(raw.reshape(())))
    else:
        value = float(arr.reshape(()))
    if not math.isfinite(value):
        return None, (f"Got {value}: the computation overflowed, took the log of 0 (an exp that "
                      "underflowed) or divided by zero somewhere.")
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
    rtol: float | None = None
    atol: float = 0.0
    digits: int | None = None
    hints: Sequence[tuple[float, str]] = field(default_factory=tuple)
    hint_rtol: float = 1e-2
    close_rtol: float = 0.05
    success: str = ""
    fallback: str = "Check each step against the equations above."

    def __post_init__(self):
        if self.rtol is None:
            # With digits, every digit given must be right (below); rtol only absorbs
            # float32 rounding of a computed answer. Without, 1e-3 of the answer.
            self.rtol = 1e-6 if self.digits is not None else 1e-3

    def judge(self, answer) -> tuple[bool, str]:
        """``(right, message)`` without printing."""
        value, why = as_number(answer)
        if value is None:
            return False, why
        want = float(self.want)
        right = " ".join(s for s in ("Right.", self.success) if s)
        within = max(self.atol, self.rtol * abs(want))
        shown, half = _shown(value)
        if self.digits is None:
            if abs(value - want) <= within:
                return True, right
        else:
            # Right: at least the digits the text shows, and every digit given right (the
            # answer within half a unit of its own last digit of want), or within rtol.
            # want rounded to those digits is right too: a typed 0.100 arrives as 0.1.
            if shown >= self.digits and abs(value - want) <= max(within, half * (1 + 1e-9)):
                return True, right
            if shown < self.digits and math.isclose(
                    value, _round_significant(want, self.digits), rel_tol=1e-12,
                    abs_tol=1e-15):
                return True, right
        # A right rounding with too few digits is not a mistake, even where a likely
        # mistake rounds to the same digits: ask for more digits before any hint, unless
        # the answer is exactly a likely mistake (3 for a ratio of widths, say).
        exact_mistake = any(math.isclose(value, wrong, rel_tol=1e-9, abs_tol=1e-12)
                            for wrong, _ in self.hints)
        if self.digits is not None and shown < self.digits and not exact_mistake and \
                abs(value - want) <= half * (1 + 1e-9):
            return False, (f"Close: right method, but give more digits (at least "
                           f"{self.digits} significant).")
        # the nearest of the likely mistakes within reach, so two close ones are not confused
        near = [(abs(value - wrong), message) for wrong, message in self.hints
                if abs(value - wrong) <= self.hint_rtol * abs(wrong) or value == wrong]
        if near:
            return False, f"Not quite. {min(near, key=lambda t: t[0])[1]}"
        if abs(value - want) <= self.close_rtol * abs(want):
            # Fewer digits than asked are the right method only if they are the right
            # answer rounded to those digits (0.71 for 0.7071, not 0.72).
            too_few = self.digits is not None and shown < self.digits
            if too_few and abs(value - want) <= half * (1 + 1e-9):
                return False, (f"Close: right method, but give more digits (at least "
                               f"{self.digits} significant).")
            if self.digits is None and abs(value - want) <= half * (1 + 1e-9):
                return False, "Close: right method, but give more digits."
            return False, "Close, but not right: check the last step and the rounding."
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


def _shown(value: float) -> tuple[int, float]:
    """``(significant digits, half a unit of the last digit)`` of ``repr(value)``.

    Trailing zeros are not counted, before the point or after it: 5,700,000 is two
    digits (a rounded count), and a typed 0.100 arrives as the float 0.1 anyway. Zero
    shows no digit at all, so it is never a rounding of another answer (0 for 0.356).
    """
    value = abs(float(value))
    if value == 0:
        return 0, 0.0
    digits, exponent = Decimal(repr(value)).normalize().as_tuple()[1:]
    return len(digits), 0.5 * 10.0 ** exponent
