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
    from django.db import connections

    from .models import Judge, judge_key_env_error

    warnings: list[CheckMessage] = []
    # `migrate` runs the database checks before it creates the tables: nothing to check yet.
    aliases = [
        alias
        for alias in databases
        if Judge._meta.db_table in connections[alias].introspection.table_names()
    ]
    judges = (
        judge
        for alias in aliases
        for judge in Judge.objects.using(alias)
        .order_by("name")
        .only("id", "name", "kind", "api_key_env")
    )
    for judge in judges:
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
