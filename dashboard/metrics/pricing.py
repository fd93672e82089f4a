"""Cost of a trace from its spans' tokens and the ``ModelPrice`` table.

A provider-reported cost on a span wins. Otherwise the price is the most specific matching
pattern (an exact name beats a glob, a longer glob beats a shorter one) effective on the
span's day. A span with tokens and no price is never counted as zero: the trace's cost is
its priced part, and the models without a price are listed beside it. A span with no
tokens and no reported cost (a micro model that only returns a label) costs nothing to
price and is never listed.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import date

from tracestore.contracts import SpanUsage, SpanView
from tracestore.queries import CACHED_TOKEN_KEYS, REPORTED_COST_KEYS

from ..models import ModelPrice


@dataclass(frozen=True, slots=True)
class Price:
    pattern: str
    effective_from: date
    input_per_million: float
    output_per_million: float
    cached_input_per_million: float


@dataclass(frozen=True, slots=True)
class TraceCost:
    """``cost`` is the priced part; the whole cost only when ``unpriced_models`` is empty."""

    cost: float
    unpriced_models: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.unpriced_models


def glob_regex(pattern: str) -> str:
    """A PostgreSQL regular expression matching every name ``fnmatch`` matches with
    ``pattern``, and possibly more: a ``[...]`` set matches any one character. Used to find
    the traces a price change may re-price, where matching more is only more work."""
    out = ["^"]
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = i + 1 if pattern[i : i + 1] == "!" else i
            end = end + 1 if pattern[end : end + 1] == "]" else end
            close = pattern.find("]", end)
            if close < 0:
                out.append("\\[")
            else:
                out.append(".")
                i = close + 1
        else:
            out.append(char if char.isalnum() else "\\" + char)
    out.append("$")
    return "".join(out)


class PriceBook:
    def __init__(self, prices: list[Price]) -> None:
        self._prices = prices
        self._cache: dict[tuple[str, date], Price | None] = {}

    @classmethod
    def load(cls) -> PriceBook:
        return cls(
            [
                Price(
                    pattern=p.model_pattern,
                    effective_from=p.effective_from,
                    input_per_million=float(p.input_per_million),
                    output_per_million=float(p.output_per_million),
                    cached_input_per_million=float(
                        p.input_per_million
                        if p.cached_input_per_million is None
                        else p.cached_input_per_million
                    ),
                )
                for p in ModelPrice.objects.all()
            ]
        )

    def price(self, model: str, day: date) -> Price | None:
        key = (model, day)
        if key not in self._cache:
            matches = [
                p
                for p in self._prices
                if p.effective_from <= day
                and (p.pattern == model or fnmatch.fnmatchcase(model, p.pattern))
            ]
            self._cache[key] = max(
                matches,
                key=lambda p: (p.pattern == model, len(p.pattern), p.effective_from),
                default=None,
            )
        return self._cache[key]

    def trace_cost(self, usage: list[SpanUsage]) -> TraceCost:
        total = 0.0
        unpriced: set[str] = set()
        for span in usage:
            if span.reported_cost is not None:
                total += span.reported_cost
                continue
            price = self.price(span.model, span.start_time.date())
            if price is None:
                unpriced.add(span.model)
                continue
            cached = min(span.cached_tokens, span.prompt_tokens)
            total += (
                (span.prompt_tokens - cached) * price.input_per_million
                + cached * price.cached_input_per_million
                + span.completion_tokens * price.output_per_million
            ) / 1e6
        return TraceCost(cost=total, unpriced_models=tuple(sorted(unpriced)))


@dataclass(frozen=True, slots=True)
class SpanCost:
    span_id: str
    name: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    source: str  # "reported", "price" or "no price"


def _number(attributes: dict, keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def cost_breakdown(spans: list[SpanView], prices: PriceBook | None = None) -> list[SpanCost]:
    """Per span with a model and tokens (or a reported cost): what it cost and why."""
    prices = prices or PriceBook.load()
    out = []
    for span in spans:
        reported = _number(span.attributes, REPORTED_COST_KEYS)
        tokens = (span.prompt_tokens or 0) + (span.completion_tokens or 0)
        if not span.model or (not tokens and reported is None):
            continue
        usage = SpanUsage(
            model=span.model,
            start_time=span.start_time,
            prompt_tokens=span.prompt_tokens or 0,
            completion_tokens=span.completion_tokens or 0,
            cached_tokens=int(_number(span.attributes, CACHED_TOKEN_KEYS) or 0),
            reported_cost=reported,
        )
        cost = prices.trace_cost([usage])
        out.append(
            SpanCost(
                span_id=span.span_id,
                name=span.name,
                model=span.model,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=cost.cost if cost.complete else None,
                source="reported"
                if reported is not None
                else ("price" if cost.complete else "no price"),
            )
        )
    return out
