"""Judge instances for a job: the process-wide local judge, or an LLM endpoint client."""

from __future__ import annotations

import logging
import os
from functools import cache

from django.conf import settings

from .judges import Judge, JudgeError
from .judges.local import LexicalJudge
from .judges.openai_compatible import OpenAICompatibleJudge
from .models import Judge as JudgeConfig
from .models import judge_key_env_error

log = logging.getLogger(__name__)


@cache
def local_judge() -> Judge:
    """Loaded once per worker process: the MiniLM judge when its packages are installed
    (and MICROLENS_LOCAL_JUDGE is not ``lexical``), else the lexical judge."""
    if settings.MICROLENS_LOCAL_JUDGE != "lexical":
        try:
            from .judges.embedding import EmbeddingJudge

            return EmbeddingJudge.load()
        except Exception as exc:  # any load failure falls back to the lexical floor
            log.info("judge.local_fallback judge=local-lexical reason=%s", exc)
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
