"""``manage.py check --database default`` lists judges saved before their API key variable
had to start with ``MICROLENS_JUDGE_``: the workers refuse to read those variables (the
judge's jobs fail with the reason) until the judge names a variable so prefixed."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.security, Tags.database)
def judge_key_env_prefix(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    if not databases:
        return []
    from .models import Judge, judge_key_env_error

    warnings: list[CheckMessage] = []
    for judge in Judge.objects.order_by("name").only("id", "name", "kind", "api_key_env"):
        error = judge_key_env_error(judge.api_key_env)
        if error is not None:
            warnings.append(
                Warning(
                    f"judge {judge.name!r}: api_key_env {judge.api_key_env!r} {error};"
                    " its evaluations fail until it is changed",
                    hint="Set the key in a MICROLENS_JUDGE_ variable and name it in the admin.",
                    obj=judge,
                    id="evaluators.W001",
                )
            )
    return warnings
