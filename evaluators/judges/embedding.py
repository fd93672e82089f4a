"""The local judge with a sentence-embedding model: MiniLM (all-MiniLM-L6-v2, Apache-2.0),
exported once to int8 ONNX (``bin/export_minilm_onnx.py``) and committed in ``minilm/``
with its tokenizer, licence and checksums; run by ``onnxruntime`` on CPU with the
``tokenizers`` library. No PyTorch at run time and nothing downloaded; without those two
packages (or with the model file missing or altered) ``load`` raises and the worker falls
back to the lexical judge (a marked fallback, see ``judging.py``).

TaskCompletion: the lexical judge's hard failures (empty, refusal, broken format) first;
otherwise the cosine similarity of input and output decides on-task vs off-task (it
separates real replies from replies to other questions far better than word overlap, see
docs/benchmarks.md). Groundedness is the lexical judge's, and its scores name it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from . import Score
from .local import LexicalJudge, blocking_problem

MODEL_DIR = Path(__file__).with_name("minilm")
MODEL_FILE = MODEL_DIR / "model.int8.onnx"
TOKENIZER_FILE = MODEL_DIR / "tokenizer.json"
# all-MiniLM-L6-v2 was trained on 128 word pieces and sentence-transformers cuts it at 256.
MAX_TOKENS = 256

# cosine 0.2 -> 0.5: the midpoint between real replies (median ~0.5) and replies to other
# questions (median ~0.05) on chatterbot data.
_MIDPOINT = 0.2
_SLOPE = 1.25


def expected_checksum(name: str) -> str:
    for line in (MODEL_DIR / "SHA256SUMS").read_text().splitlines():
        digest, _, file = line.partition("  ")
        if file == name:
            return digest
    raise FileNotFoundError(f"{name} is not listed in {MODEL_DIR / 'SHA256SUMS'}")


class MiniLMEncoder:
    """Sentence embeddings (mean-pooled, L2-normalised) from the int8 ONNX export."""

    def __init__(self, session: Any, tokenizer: Any) -> None:
        self._session = session
        self._tokenizer = tokenizer

    @classmethod
    def load(cls) -> MiniLMEncoder:
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ImportError(f"the MiniLM judge needs {exc.name}") from exc
        data = MODEL_FILE.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected_checksum(MODEL_FILE.name):
            raise ValueError(f"{MODEL_FILE.name} does not match its checksum (SHA256SUMS)")
        options = onnxruntime.SessionOptions()
        # One evaluation at a time per worker process: one thread each keeps a worker
        # from taking every core of a shared host.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            data, sess_options=options, providers=["CPUExecutionProvider"]
        )
        tokenizer = Tokenizer.from_file(str(TOKENIZER_FILE))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 (a token, not a secret)
        return cls(session, tokenizer)

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        encoded = self._tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }
        (embeddings,) = self._session.run(["embedding"], feeds)
        return embeddings


class EmbeddingJudge:
    name = "local-minilm"

    def __init__(self, encoder: Any, version: str) -> None:
        self._encoder = encoder
        self._lexical = LexicalJudge()
        self.version = version

    @classmethod
    def load(cls) -> EmbeddingJudge:
        encoder = MiniLMEncoder.load()
        return cls(encoder, "onnx-int8 sha256:" + expected_checksum(MODEL_FILE.name)[:16])

    def task_completion(self, input_text: str, output_text: str) -> Score:
        problem = blocking_problem(input_text, output_text)
        if problem is not None:
            return problem
        asked, answered = self._encoder.encode([input_text, output_text])
        cosine = float((asked * answered).sum())
        score = max(0.0, min(1.0, 0.5 + (cosine - _MIDPOINT) * _SLOPE))
        verdict = "on task" if score >= 0.5 else "off task"
        return Score(
            score,
            f"{verdict} (input/output similarity {cosine:.2f})",
            judge=self.name,
            judge_version=self.version,
        )

    def groundedness(self, output_text: str, documents: list[str]) -> Score:
        # The lexical model decides, and its score says so (judge local-lexical).
        return self._lexical.groundedness(output_text, documents)
