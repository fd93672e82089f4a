"""The Groundedness judge reads support, not wording: over generated cases, wording that
makes no claim (a neutral prefix or suffix, casing, spacing, the order of sentences) moves
the score by at most EPS, and an output that changes a number, date, name or place against
its context fails while the faithful one passes."""

from __future__ import annotations

import random

import pytest

from evaluators.checks import verdicts
from evaluators.judges.local import LexicalJudge

JUDGE = LexicalJudge()
THRESHOLD = verdicts.DEFAULT_THRESHOLDS["groundedness"]
EPS = 0.02

STREETS = ["Main", "Harbor", "Maple", "Station", "Market", "Bridge", "Church", "Mill"]
CITIES = ["Springfield", "Riverton", "Lakewood", "Fairview", "Greenville", "Ashford"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FIRST = ["Alice", "Brian", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hugo"]
LAST = ["Moreno", "Okafor", "Lindqvist", "Tanaka", "Dubois", "Kowalski"]


def case(rng: random.Random) -> dict:
    street, other_street = rng.sample(STREETS, 2)
    city = rng.choice(CITIES)
    day, other_day = rng.sample(DAYS, 2)
    first, other_first = rng.sample(FIRST, 2)
    last = rng.choice(LAST)
    opens, other_opens = rng.sample([7, 8, 9, 10, 11], 2)
    closes = rng.choice([5, 6, 7, 8])
    phone, other_phone = rng.sample(range(1000, 9999), 2)
    year, other_year = rng.sample(range(2005, 2024), 2)
    context = (
        f"The {street} Street store in {city} opens at {opens} am on {day} and closes at "
        f"{closes} pm. Its phone number is 555-{phone}. The manager is {first} {last}, who "
        f"joined the company in {year}. Returns are accepted within 30 days with a receipt."
    )
    faithful = [
        f"The {street} Street store opens at {opens} am on {day}.",
        f"You can call the store at 555-{phone}.",
        f"The manager is {first} {last}.",
        f"{first} {last} joined the company in {year}.",
    ]
    swapped = [
        ("number", f"The {street} Street store opens at {other_opens} am on {day}."),
        ("phone", f"You can call the store at 555-{other_phone}."),
        ("name", f"The manager is {other_first} {last}."),
        ("date", f"{first} {last} joined the company in {other_year}."),
        ("day", f"The {street} Street store opens at {opens} am on {other_day}."),
        ("place", f"The {other_street} Street store opens at {opens} am on {day}."),
    ]
    return {"context": [context], "faithful": faithful, "swapped": swapped}


CASES = [case(random.Random(seed)) for seed in range(40)]


def score(output: str, context: list[str]) -> float:
    verdict = verdicts.groundedness(output, context, judge=JUDGE, threshold=THRESHOLD)
    assert verdict.score is not None
    return verdict.score


NEUTRAL_VARIANTS = {
    "prefix Actually": lambda text: "Actually, " + text,
    "prefix Well": lambda text: "Well, " + text,
    "prefix He says": lambda text: "He says " + text[0].lower() + text[1:],
    "suffix thanks": lambda text: text + " Thanks!",
    "lower case": str.lower,
    "upper case": str.upper,
    "spacing": lambda text: "  " + text.replace(" ", "   ") + " \t",
}


@pytest.mark.parametrize("variant", sorted(NEUTRAL_VARIANTS))
def test_neutral_wording_does_not_move_the_score(variant: str) -> None:
    change = NEUTRAL_VARIANTS[variant]
    moved = []
    for c in CASES:
        outputs = c["faithful"] + [text for _, text in c["swapped"]]
        for text in outputs:
            before, after = score(text, c["context"]), score(change(text), c["context"])
            if abs(before - after) > EPS:
                moved.append((text, round(before, 3), round(after, 3)))
    assert moved == [], moved[:5]


def test_sentence_order_does_not_move_the_score() -> None:
    moved = []
    for c in CASES:
        for a, b in [(0, 1), (2, 3), (1, 2)]:
            one = f"{c['faithful'][a]} {c['faithful'][b]}"
            other = f"{c['faithful'][b]} {c['faithful'][a]}"
            x, y = score(one, c["context"]), score(other, c["context"])
            if abs(x - y) > EPS:
                moved.append((one, x, y))
    assert moved == [], moved[:5]


def test_faithful_outputs_pass() -> None:
    failed = [
        (text, round(score(text, c["context"]), 3))
        for c in CASES
        for text in c["faithful"]
        if score(text, c["context"]) < THRESHOLD
    ]
    assert failed == [], failed[:5]


@pytest.mark.parametrize("kind", ["number", "phone", "name", "date", "day", "place"])
def test_a_changed_fact_fails(kind: str) -> None:
    passed = [
        (text, round(score(text, c["context"]), 3))
        for c in CASES
        for k, text in c["swapped"]
        if k == kind and score(text, c["context"]) >= THRESHOLD
    ]
    assert passed == [], passed[:5]


def test_a_changed_fact_fails_beside_faithful_claims() -> None:
    passed = []
    for c in CASES:
        for _, text in c["swapped"]:
            output = f"{c['faithful'][2]} {text}"
            if score(output, c["context"]) >= THRESHOLD:
                passed.append(output)
    assert passed == [], passed[:5]


def short_answers(c: dict, rng: random.Random) -> tuple[list[str], list[str]]:
    """Bare answers, as to a question: what the context states, and a name, year or place it
    does not (alone, or in place of one word of the right answer)."""
    context = c["context"][0]
    first, last = context.split("The manager is ")[1].split(",")[0].split()
    year = context.split("joined the company in ")[1][:4]
    street = context.split("The ")[1].split()[0]
    city = context.split(" in ")[1].split()[0]
    other_first = rng.choice([f for f in FIRST if f != first])
    other_last = rng.choice([n for n in LAST if n != last])
    other_city = rng.choice([x for x in CITIES if x != city])
    other_year = str(int(year) + rng.choice([-3, -1, 1, 2]))
    faithful = [f"{first} {last}", year, f"{street} Street", city, f"in {year}"]
    wrong = [f"{other_first} {last}", f"{first} {other_last}", other_year, other_city]
    wrong.append(f"{other_first} {other_last}")
    return faithful, wrong


def test_short_answers_are_calibrated_both_ways() -> None:
    """A short answer's support is measured on a word or two: the short band's calibration
    (fitted on generated short answers, not on any benchmark source) must pass the right
    ones and fail the wrong ones."""
    rng = random.Random(11)
    right, wrong = [], []
    for c in CASES:
        faithful, changed = short_answers(c, rng)
        right += [(t, round(score(t, c["context"]), 3)) for t in faithful]
        wrong += [(t, round(score(t, c["context"]), 3)) for t in changed]
    assert len(right) == len(wrong) == 200
    assert [r for r in right if r[1] < THRESHOLD] == []
    assert [w for w in wrong if w[1] >= THRESHOLD] == []
