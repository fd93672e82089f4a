"""Judge instances for a job: the process-wide local judge, or an LLM endpoint client."""

from __future__ import annotations

import logging
import os
from functools import cache

from django.conf import settings

from .judges import Judge, JudgeError, Score
from .judges.local import LexicalJudge
from .judges.openai_compatible import OpenAICompatibleJudge
from .models import Judge as JudgeConfig
from .models import judge_key_env_error

log = logging.getLogger(__name__)


class FallbackJudge:
    """The lexical judge standing in for a MiniLM judge that could not load: every score
    it gives says so (``Score.fallback``), so results and pages show a fallback, never
    the judge that was wanted."""

    def __init__(self, wanted: str, reason: str) -> None:
        self._lexical = LexicalJudge()
        self.name = self._lexical.name
        self.version = self._lexical.version
        self.fallback = f"{wanted} unavailable: {reason}"[:500]

    def task_completion(self, input_text: str, output_text: str) -> Score:
        return self._mark(self._lexical.task_completion(input_text, output_text))

    def groundedness(self, output_text: str, documents: list[str]) -> Score:
        return self._mark(self._lexical.groundedness(output_text, documents))

    def _mark(self, score: Score) -> Score:
        return Score(
            score.score, score.reason, score.judge, score.judge_version, fallback=self.fallback
        )


@cache
def local_judge() -> Judge:
    """Loaded once per worker process: the MiniLM judge (MICROLENS_LOCAL_JUDGE ``auto``),
    or the lexical judge when asked for (``lexical``). A MiniLM judge that cannot load is
    a fallback: logged as a warning, and marked on every result it gives."""
    if settings.MICROLENS_LOCAL_JUDGE != "lexical":
        try:
            from .judges.embedding import EmbeddingJudge

            return EmbeddingJudge.load()
        except Exception as exc:  # any load failure falls back to the lexical floor
            log.warning(
                "judge.local_fallback judge=local-lexical wanted=local-minilm reason=%s", exc
            )
            return FallbackJudge("local-minilm", str(exc))
    return LexicalJudge()


def judge_for(config: JudgeConfig | None) -> Judge:
    if config is None or config.kind == JudgeConfig.Kind.LOCAL:
        return local_judge()
    refused = judge_key_env_error(config.api_key_env)
    if refused is not None:
        # A row saved before the prefix was enforced: its variable is never read, the job
        # fails with this reason until the judge names a MICROLENS_JUDGE_ variable.
        raise JudgeError(
            f"judge {config.name!r} names api_key_env {config.api_key_env!r}, which is not"
            f" read: it {refused}"
        )
    if config.api_key_env == "MICROLENS_JUDGE_API_KEY":
        api_key = settings.MICROLENS_JUDGE_API_KEY or ""
    else:
        api_key = os.environ.get(config.api_key_env, "")
    return OpenAICompatibleJudge(
        name=config.name,
        base_url=config.base_url or settings.MICROLENS_JUDGE_URL or "",
        model=config.model or settings.MICROLENS_JUDGE_MODEL or "",
        api_key=api_key,
        timeout=config.timeout_seconds,
        allow_private=settings.MICROLENS_JUDGE_ALLOW_PRIVATE,
    )
