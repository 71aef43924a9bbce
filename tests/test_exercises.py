"""The chapters' answer checker: sensible forms accepted, mistakes hinted, nothing crashes."""

import json

import numpy as np
import pytest

from vae_numpy.exercises import NumberCheck, as_number

CHECK = NumberCheck(1.6042, digits=2, hints=[(1.5, "That is mu alone.")],
                    success="z moved by sigma * eps.", fallback="Use z = mu + sigma * eps.")


@pytest.mark.parametrize("answer", [1.6042, np.float32(1.6042), np.array(1.6042),
                                    np.array([1.6042]), [1.6042], 1.6, 1.60, 1.604, 1.604200001])
def test_right_answers_in_any_sensible_form(answer):
    right, message = CHECK.judge(answer)
    assert right, message
    assert message == "Right. z moved by sigma * eps."


@pytest.mark.parametrize("answer, says", [
    (None, "Not answered"), ("1.6", "drop the quotes"), (True, "boolean"),
    ([1.6, 1.6], "one number"), (np.zeros((2, 2)), "one number"), (float("nan"), "nan"),
    (float("inf"), "overflowed"), ({"a": 1}, "Expected a number"), (object(), "Expected"),
    ([1.6, [1.6, 1.6]], "Expected a number"),
    (1.5, "mu alone"), (1.61, "Close, but not right"), (1.7, "Use z = mu"),
    (1.6043, "Close, but not right"),
    (-1.6042, "Use z = mu"),
])
def test_wrong_answers_get_a_message_and_never_raise(answer, says, capsys):
    right, message = CHECK.judge(answer)
    assert not right and says in message
    assert "1.60" not in message     # the answer is never given away
    assert CHECK(answer) is False and capsys.readouterr().out.strip() == message


def test_rounding_to_fewer_digits_than_the_text_shows_is_not_enough():
    assert not NumberCheck(1.6142, digits=3).judge(1.6)[0]
    assert NumberCheck(1.6142, digits=3).judge(1.61)[0]
    assert NumberCheck(1.6142, digits=3).judge(1.614)[0]


def test_trailing_zeros_that_a_float_drops_still_count():
    # 0.100 typed for 0.10026 (three significant digits) arrives as the float 0.1
    assert NumberCheck(0.10026, digits=3).judge(0.100)[0]
    assert NumberCheck(1.6042, digits=3).judge(1.60)[0]
    assert not NumberCheck(0.10026, digits=3).judge(0.101)[0]


def test_zero_and_negative_wants():
    assert NumberCheck(0.0, atol=1e-9).judge(0)[0]
    assert not NumberCheck(0.0, atol=1e-9).judge(1e-3)[0]
    assert NumberCheck(-2.5, digits=2).judge(-2.5)[0]


def test_text_or_booleans_inside_an_array_are_not_numbers():
    check = NumberCheck(0.18, digits=2)
    for answer in (np.array(["0.18"]), ["0.18"], np.array([True]), [False]):
        right, why = check.judge(answer)
        assert not right and "Expected a number" in why, answer
    assert check.judge(np.array([0.18]))[0] and check.judge([0.18])[0]


def test_zero_is_no_rounding_of_a_nonzero_answer():
    check = NumberCheck(0.356, digits=3)
    assert "more digits" not in check.judge(0)[1] and not check.judge(0.0)[0]
    assert "more digits" in check.judge(0.4)[1]            # a right one-digit rounding
    assert NumberCheck(0.0, digits=2).judge(0)[0]


def test_as_number():
    assert as_number(np.int64(3)) == (3.0, "")
    assert as_number([[2.0]]) == (2.0, "")


def test_the_check_is_plain_json():
    d = json.loads(json.dumps(CHECK.to_dict()))
    assert d["want"] == 1.6042 and d["digits"] == 2 and d["hints"] == [[1.5, "That is mu alone."]]
    assert NumberCheck(**{**d, "hints": [tuple(h) for h in d["hints"]]}).judge(1.6)[0]


def test_the_nearest_of_two_close_mistakes_gets_its_hint():
    check = NumberCheck(0.5, hints=[(0.947, "the per-axis box"), (0.9545, "one axis only")])
    assert check.judge(0.9545)[1].endswith("one axis only")
    assert check.judge(0.947)[1].endswith("the per-axis box")


def test_a_close_answer_with_enough_digits_is_not_told_to_give_more():
    check = NumberCheck(2.6689, digits=3)
    assert "more digits" in check.judge(2.7)[1]                 # 2 digits: too few
    assert check.judge(2.6956)[1].startswith("Close, but not right")
    assert check.judge(2.6742)[1].startswith("Close, but not right")


def test_every_digit_given_must_be_right():
    check = NumberCheck(0.15340, digits=4)
    assert check.judge(0.1534)[0] and check.judge(0.1534000001)[0]
    assert not check.judge(0.1533)[0] and not check.judge(0.1535)[0]      # the 4th digit
    assert not check.judge(0.15332)[0] and not check.judge(0.15338)[0]    # the 5th
    assert check.judge(np.float32(0.1534))[0]                             # float32 rounding


def test_a_wrong_rounding_is_not_told_to_give_more_digits():
    check = NumberCheck(0.7071, digits=3)
    assert "more digits" in check.judge(0.71)[1]         # right, to its own two digits
    assert check.judge(0.72)[1].startswith("Close, but not right")
    assert check.judge(0.7)[1].endswith("(at least 3 significant).")


def test_float32_answers_are_read_at_their_own_precision():
    # np.float32(1.59) is 1.590000033... as a float64: still the two decimals typed
    assert as_number(np.float32(1.59)) == (1.59, "")
    assert NumberCheck(1.58698, digits=3).judge(np.float32(round(1.58698, 2)))[0]


def test_an_explicit_tolerance_still_accepts_noisy_estimates():
    check = NumberCheck(0.05265, digits=2, rtol=0.015)       # Monte Carlo answers
    assert check.judge(0.052)[0] and check.judge(0.0531)[0] and not check.judge(0.050)[0]


def test_a_rounded_whole_number_counts_its_digits_without_the_zeros():
    check = NumberCheck(5734400, digits=2, hints=[(5685248, "narrow heads")],
                        hint_rtol=3e-3)
    assert check.judge(5700000)[0] and check.judge(5730000)[0] and check.judge(5734400)[0]
    assert not check.judge(5800000)[0] and "narrow heads" in check.judge(5685248)[1]


def test_a_right_rounding_is_asked_for_digits_before_any_hint():
    # 5,685,248 (a likely mistake) and 5,734,400 (the answer) both round to 5.7e6
    check = NumberCheck(5734400, digits=3, hints=[(5685248, "narrow heads")], hint_rtol=3e-3)
    assert "more digits" in check.judge(5.7e6)[1]
    assert "narrow heads" in check.judge(5.69e6)[1] and check.judge(5.73e6)[0]


def test_an_answer_that_is_exactly_a_likely_mistake_gets_its_hint():
    check = NumberCheck(2.6689, digits=3, hints=[(3.0, "ratio of the widths")])
    assert "ratio of the widths" in check.judge(3)[1]       # not "give more digits"
    assert "more digits" in check.judge(2.7)[1]
