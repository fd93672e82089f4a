"""Generated robustness cases for the Groundedness judge, and what a scorer does on them.

Store contexts (an address, opening hours, a phone number, a manager and the year they
joined) with claims that restate them faithfully, the same claims with one fact swapped
(a number, phone, name, year, weekday or street), wording that makes no claim (a neutral
prefix or suffix, casing, spacing, the order of sentences) and bare answers, as to a
question. A Groundedness scorer should not move by more than ``EPS`` under the neutral
edits, fail every swapped fact at its threshold and pass every faithful claim.

The tests assert it (``tests/evaluators/test_groundedness_robustness.py``) and the benchmark
reports it beside the plain lexical baseline (``bench/evaluators.py``): one generator, so
both measure the same cases.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

# A score in [0, 1] of an output against its retrieved context.
Scorer = Callable[[str, list[str]], float]

EPS = 0.02  # the most a neutral edit may move a score
CASE_COUNT = 40
SHORT_ANSWER_SEED = 11

STREETS = ["Main", "Harbor", "Maple", "Station", "Market", "Bridge", "Church", "Mill"]
CITIES = ["Springfield", "Riverton", "Lakewood", "Fairview", "Greenville", "Ashford"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FIRST = ["Alice", "Brian", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hugo"]
LAST = ["Moreno", "Okafor", "Lindqvist", "Tanaka", "Dubois", "Kowalski"]

SWAP_KINDS = ("number", "phone", "name", "date", "day", "place")
# Each neutral edit with its kind: (kind, edit).
NEUTRAL_EDITS: dict[str, tuple[str, Callable[[str], str]]] = {
    "prefix Actually": ("neutral prefix", lambda text: "Actually, " + text),
    "prefix Well": ("neutral prefix", lambda text: "Well, " + text),
    "prefix He says": ("neutral prefix", lambda text: "He says " + text[0].lower() + text[1:]),
    "suffix thanks": ("neutral suffix", lambda text: text + " Thanks!"),
    "lower case": ("casing", str.lower),
    "upper case": ("casing", str.upper),
    "spacing": ("whitespace", lambda text: "  " + text.replace(" ", "   ") + " \t"),
}
SENTENCE_ORDER = "sentence order"
# Pairs of faithful claims written in both orders.
_ORDERS = ((0, 1), (2, 3), (1, 2))


@dataclass(frozen=True, slots=True)
class Case:
    context: list[str]
    faithful: list[str]
    swapped: list[tuple[str, str]]  # (swap kind, claim with that fact changed)


def case(rng: random.Random) -> Case:
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
    return Case([context], faithful, swapped)


def cases(count: int = CASE_COUNT) -> list[Case]:
    """The same cases on every call (one seed per case)."""
    return [case(random.Random(seed)) for seed in range(count)]


def short_answers(c: Case, rng: random.Random) -> tuple[list[str], list[str]]:
    """Bare answers, as to a question: what the context states, and a name, year or place it
    does not (alone, or in place of one word of the right answer)."""
    context = c.context[0]
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


def all_short_answers(found: list[Case]) -> tuple[list[tuple[str, Case]], list[tuple[str, Case]]]:
    """Every case's right and wrong bare answers (``SHORT_ANSWER_SEED``: the same each call)."""
    rng = random.Random(SHORT_ANSWER_SEED)
    right: list[tuple[str, Case]] = []
    wrong: list[tuple[str, Case]] = []
    for c in found:
        good, bad = short_answers(c, rng)
        right += [(text, c) for text in good]
        wrong += [(text, c) for text in bad]
    return right, wrong


@dataclass(frozen=True, slots=True)
class Shift:
    """How far one neutral edit moved the scores: |after - before| over ``n`` outputs, and
    the outputs moved by more than ``EPS`` (text, before, after)."""

    kind: str
    n: int
    max_change: float
    mean_change: float
    moved: list[tuple[str, float, float]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """Outputs scored against a threshold: how many, and those on the wrong side of it
    (text, score)."""

    n: int
    wrong: list[tuple[str, float]]

    @property
    def right_share(self) -> float:
        return 1 - len(self.wrong) / self.n if self.n else 0.0


def _shift(kind: str, pairs: list[tuple[str, float, float]]) -> Shift:
    changes = [abs(after - before) for _, before, after in pairs]
    return Shift(
        kind=kind,
        n=len(pairs),
        max_change=max(changes, default=0.0),
        mean_change=sum(changes) / len(changes) if changes else 0.0,
        moved=[(t, round(b, 3), round(a, 3)) for t, b, a in pairs if abs(a - b) > EPS],
    )


def edit_shifts(score: Scorer, found: list[Case]) -> dict[str, Shift]:
    """Per neutral edit (and sentence order): how far it moves the scores of the faithful
    and the swapped claims."""
    shifts = {}
    for name, (kind, edit) in NEUTRAL_EDITS.items():
        pairs = []
        for c in found:
            for text in c.faithful + [t for _, t in c.swapped]:
                pairs.append((text, score(text, c.context), score(edit(text), c.context)))
        shifts[name] = _shift(kind, pairs)
    pairs = []
    for c in found:
        for a, b in _ORDERS:
            one = f"{c.faithful[a]} {c.faithful[b]}"
            other = f"{c.faithful[b]} {c.faithful[a]}"
            pairs.append((one, score(one, c.context), score(other, c.context)))
    shifts[SENTENCE_ORDER] = _shift(SENTENCE_ORDER, pairs)
    return shifts


def _judged(
    score: Scorer, items: list[tuple[str, Case]], threshold: float, *, good: bool
) -> Outcome:
    wrong = []
    for text, c in items:
        value = score(text, c.context)
        if (value >= threshold) != good:
            wrong.append((text, round(value, 3)))
    return Outcome(len(items), wrong)


def swap_outcomes(score: Scorer, found: list[Case], threshold: float) -> dict[str, Outcome]:
    """Per swap kind, the swapped claims alone; then all of them after a faithful claim
    ("beside faithful"). ``wrong``: those that pass."""
    outcomes = {
        kind: _judged(
            score,
            [(t, c) for c in found for k, t in c.swapped if k == kind],
            threshold,
            good=False,
        )
        for kind in SWAP_KINDS
    }
    beside = [(f"{c.faithful[2]} {t}", c) for c in found for _, t in c.swapped]
    outcomes["beside faithful"] = _judged(score, beside, threshold, good=False)
    return outcomes


def faithful_outcome(score: Scorer, found: list[Case], threshold: float) -> Outcome:
    """The faithful claims; ``wrong``: those that fail."""
    return _judged(score, [(t, c) for c in found for t in c.faithful], threshold, good=True)


def short_answer_outcomes(
    score: Scorer, found: list[Case], threshold: float
) -> tuple[Outcome, Outcome]:
    """Right bare answers (``wrong``: those that fail) and wrong ones (those that pass)."""
    right, wrong = all_short_answers(found)
    return (
        _judged(score, right, threshold, good=True),
        _judged(score, wrong, threshold, good=False),
    )
