"""``microlens gate``: the release gate for CI. A thin client of a running stack's
``/api/v1/micro-models/<name>/compare/``, standard library only, so it runs in another
project's CI with nothing installed: ``python microlens/gate.py ...`` runs this file alone
(it imports nothing of the package). It prints the comparison and exits

- 0 when no drop's interval lies wholly beyond the allowed margin,
- 1 when one does (a regression),
- 2 when there is too little data to say,
- 3 when the gate could not run (bad arguments, no key, the API unreachable or refusing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, TextIO

EXIT = {"pass": 0, "fail": 1, "insufficient": 2}
EXIT_ERROR = 3
FORMATS = ("table", "json", "markdown")
_DROP = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(pp|%)?\s*$")


class GateError(Exception):
    """The gate could not ask (the message says why)."""


def parse_max_drop(raw: str) -> float:
    """``2pp``, ``2%`` or ``2`` (percentage points) -> 0.02."""
    match = _DROP.match(raw)
    if match is None:
        raise GateError(f"--max-drop: percentage points such as 2pp ({raw!r})")
    points = float(match.group(1))
    if points >= 100:
        raise GateError("--max-drop: below 100pp")
    return points / 100


@dataclass(frozen=True)
class GateOptions:
    url: str
    api_key: str
    micro_model: str
    baseline: str
    candidate: str
    window: str = "7d"
    max_drop: float = 0.02
    min_n: int | None = None
    project: int | None = None
    output_format: str = "table"
    timeout: float = 60.0


def fetch_comparison(options: GateOptions) -> dict[str, Any]:
    query = {
        "baseline": options.baseline,
        "candidate": options.candidate,
        "window": options.window,
        "max_drop": repr(options.max_drop),
    }
    if options.min_n is not None:
        query["min_n"] = str(options.min_n)
    if options.project is not None:
        query["project"] = str(options.project)
    if urllib.parse.urlsplit(options.url).scheme not in ("http", "https"):
        raise GateError(f"--url: an http:// or https:// address ({options.url!r})")
    name = urllib.parse.quote(options.micro_model, safe="")
    url = (
        f"{options.url.rstrip('/')}/api/v1/micro-models/{name}/compare/"
        f"?{urllib.parse.urlencode(query)}"
    )
    request = urllib.request.Request(  # noqa: S310  (the scheme is checked above)
        url,
        headers={"Authorization": f"Bearer {options.api_key}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=options.timeout) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise GateError(f"{url} answered {exc.code}: {_error_message(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise GateError(f"cannot reach {options.url}: {exc}") from None
    except ValueError as exc:
        raise GateError(f"{url} did not answer JSON: {exc}") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return exc.reason if isinstance(exc.reason, str) else "error"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _pp(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}"


def _side(side: dict[str, Any]) -> str:
    return f"{_pct(side['value'])} (n={side['n']})"


def _cells(row: dict[str, Any]) -> list[str]:
    interval = (
        "-"
        if row["low"] is None
        else f"{_pp(row['difference'])} pp ({_pp(row['low'])} to {_pp(row['high'])})"
    )
    status = {"ok": "ok", "regression": "REGRESSION", "too_little_data": "too little data"}
    return [
        row["name"],
        row["metric"].replace("_", " "),
        _side(row["baseline"]),
        _side(row["candidate"]),
        interval,
        status[row["status"]],
    ]


HEADERS = ["label / evaluator", "metric", "baseline", "candidate", "difference (95 %)", "status"]


def _summary(result: dict[str, Any]) -> str:
    verdict = {
        "pass": "PASS: no drop beyond the margin",
        "fail": f"FAIL: {result['regressions']} regression(s) beyond the margin",
        "insufficient": f"TOO LITTLE DATA: no value has n >= {result['min_n']} on both sides",
    }[result["verdict"]]
    return (
        f"{result['micro_model']}: {result['candidate']} vs {result['baseline']},"
        f" {result['start']} to {result['end']}, allowed drop"
        f" {100 * result['max_drop']:.1f} pp. {verdict}"
    )


def render(result: dict[str, Any], output_format: str) -> str:
    if output_format == "json":
        return json.dumps(result, indent=2)
    rows = [_cells(row) for row in result["rows"]]
    if output_format == "markdown":
        lines = [f"**{_summary(result)}**", ""]
        lines.append("| " + " | ".join(HEADERS) + " |")
        lines.append("|" + "---|" * len(HEADERS))
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    lines = [_summary(result), ""]
    lines.append("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def run_gate(options: GateOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        result = fetch_comparison(options)
    except GateError as exc:
        print(f"microlens gate: {exc}", file=err)
        return EXIT_ERROR
    print(render(result, options.output_format), file=out)
    return EXIT[result["verdict"]]


def key_from_env(variable: str) -> str:
    key = os.environ.get(variable, "").strip()
    if not key:
        raise GateError(f"no API key: set {variable} (a project API key)")
    return key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--micro-model", required=True, help="micro model name")
    parser.add_argument("--baseline", required=True, help="key=value, e.g. prompt.version=v1")
    parser.add_argument("--candidate", required=True, help="key=value, e.g. prompt.version=v2")
    parser.add_argument("--window", default="7d", help="e.g. 36h or 7d (default 7d)")
    parser.add_argument("--max-drop", default="2pp", help="allowed drop (default 2pp)")
    parser.add_argument("--min-n", type=int, default=None, help="least n per side (default 30)")
    parser.add_argument("--project", type=int, default=None, help="project id (default: all)")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument(
        "--url",
        default="http://127.0.0.1:8000",
        help="the stack's web address (default http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--api-key-env",
        default="MICROLENS_API_KEY",
        help="environment variable holding the project API key (default MICROLENS_API_KEY)",
    )


def run_from_arguments(options: argparse.Namespace) -> int:
    try:
        gate_options = GateOptions(
            url=options.url,
            api_key=key_from_env(options.api_key_env),
            micro_model=options.micro_model,
            baseline=options.baseline,
            candidate=options.candidate,
            window=options.window,
            max_drop=parse_max_drop(options.max_drop),
            min_n=options.min_n,
            project=options.project,
            output_format=options.format,
        )
    except GateError as exc:
        print(f"microlens gate: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return run_gate(gate_options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="microlens gate",
        description="Exit 0 when no drop's interval lies wholly beyond --max-drop, 1 when one"
        " does, 2 when there is too little data to say, 3 when the gate could not run.",
    )
    add_arguments(parser)
    try:
        options = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse's usage error is 2, which here means "too little data".
        return EXIT_ERROR if exc.code == 2 else int(exc.code or 0)
    return run_from_arguments(options)


if __name__ == "__main__":
    sys.exit(main())
