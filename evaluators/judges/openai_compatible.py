"""An LLM judge behind any OpenAI-compatible ``/chat/completions`` endpoint.

It asks for a verdict shaped by a JSON schema and validates it: an answer that is not that
shape is a permanent ``JudgeError`` (recorded as a failed job), never a pass. Timeouts,
429 and 5xx are ``JudgeUnavailable`` carrying the server's ``Retry-After``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from microlens import outbound

from . import JudgeError, JudgeUnavailable, Score

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "pass": {"type": "boolean"},
        "reason": {"type": "string"},
    },
    "required": ["score", "pass", "reason"],
    "additionalProperties": False,
}

_SYSTEM = (
    "You are a strict evaluator of a small model's output. Answer only with a JSON object "
    '{"score": number between 0 and 1, "pass": boolean, "reason": one short sentence}.'
)
_TASK_COMPLETION = (
    "Did the OUTPUT accomplish what the INPUT asked: every requested part present, format "
    "and constraints followed, not a refusal, not off topic? Score 1 for complete, 0 for "
    "not at all.\n\nINPUT:\n{input}\n\nOUTPUT:\n{output}"
)
_GROUNDEDNESS = (
    "Split the OUTPUT into claims and check each against the CONTEXT. A contradicted claim "
    "counts more against the output than an unsupported one. Score 1 when every claim is "
    "supported, 0 when the output is contradicted or invented.\n\nCONTEXT:\n{context}\n\n"
    "OUTPUT:\n{output}"
)
_MAX_REASON = 500


class OpenAICompatibleJudge:
    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        model: str,
        api_key: str,
        timeout: float,
        allow_private: bool = False,
    ) -> None:
        if not base_url or not model:
            raise JudgeError(f"judge {name!r} needs a base URL and a model")
        self.name = name
        self.version = model  # what an endpoint tells of its judge: the model it serves
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._api_key = api_key
        self._timeout = timeout
        self._allow_private = allow_private

    def task_completion(self, input_text: str, output_text: str) -> Score:
        return self._verdict(_TASK_COMPLETION.format(input=input_text, output=output_text))

    def groundedness(self, output_text: str, documents: list[str]) -> Score:
        context = "\n\n".join(f"[{i + 1}] {doc}" for i, doc in enumerate(documents))
        return self._verdict(_GROUNDEDNESS.format(context=context, output=output_text))

    def _verdict(self, prompt: str) -> Score:
        body = {
            "model": self._model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": _SYSTEM},
                {"role": "user", "content": prompt},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "strict": True, "schema": VERDICT_SCHEMA},
            },
        }
        answer = self._post(body)
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise JudgeError("judge answer has no choices[0].message.content") from exc
        return parse_verdict(content)

    def _post(self, body: dict[str, Any]) -> Any:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        # The URL is checked again here, whatever was saved: the name is resolved once and
        # the connection pinned to that address (see microlens/outbound.py).
        try:
            response = outbound.post(
                self._url,
                json.dumps(body).encode(),
                headers,
                allow_private=self._allow_private,
                timeout=self._timeout,
                max_response_bytes=4 << 20,
            )
        except outbound.RefusedTarget as exc:
            raise JudgeError(f"judge {self.name!r} refused: {exc}") from exc
        except outbound.Unreachable as exc:
            if exc.timed_out:
                raise JudgeUnavailable(f"judge timed out after {self._timeout:g}s") from exc
            raise JudgeUnavailable(f"judge unreachable: {exc}") from exc
        if response.status == 429 or response.status >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise JudgeUnavailable(f"judge answered HTTP {response.status}", retry_after)
        if not 200 <= response.status < 300:
            raise JudgeError(f"judge answered HTTP {response.status}")
        raw = response.body
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise JudgeError("judge answer is not JSON") from exc


def parse_verdict(content: Any) -> Score:
    """Validate a verdict against ``VERDICT_SCHEMA``; anything else is a ``JudgeError``."""
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError as exc:
            raise JudgeError("malformed verdict: not a JSON object") from exc
    if not isinstance(content, dict) or set(content) != {"score", "pass", "reason"}:
        raise JudgeError("malformed verdict: expected exactly score, pass and reason")
    score, passed, reason = content["score"], content["pass"], content["reason"]
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise JudgeError("malformed verdict: score is not a number")
    if not 0 <= score <= 1:
        raise JudgeError("malformed verdict: score outside [0, 1]")
    if not isinstance(passed, bool):
        raise JudgeError("malformed verdict: pass is not a boolean")
    if not isinstance(reason, str) or not reason.strip():
        raise JudgeError("malformed verdict: reason is empty")
    # The configured threshold decides pass/fail for every judge alike; a judge whose own
    # "pass" disagrees with its score says so in the reason.
    note = "" if passed == (score >= 0.5) else f" (judge said pass={str(passed).lower()})"
    return Score(float(score), reason.strip()[:_MAX_REASON] + note)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
