"""Coverage-guided fuzzing of the compiled OTLP decoder against the reference decoder.

    bin/bench fuzz_decoder.py --seconds 300
    bin/bench fuzz_decoder.py --seconds 900 --corpus /tmp/otlp-corpus   # keep the corpus
    bin/bench fuzz_decoder.py --reproduce path/to/crash-<sha1>           # one input again

``tracestore/_otlp.c`` parses untrusted bytes. This builds it a second time, into a
temporary folder (never the in-place build the receivers load), with clang:
AddressSanitizer, UndefinedBehaviorSanitizer (aborting at the first report) and libFuzzer's
coverage instrumentation; then runs atheris (libFuzzer) on it, with the sanitizer runtime
preloaded and Python's allocator off so every allocation is checked.

Every input is decoded twice per set of limits (the default ones, and small ones that make
values truncated and attribute lists cut): by ``decode_protobuf`` with the compiled decoder,
and by the reference (protobuf runtime + ``decode_request``). Both must give the same
outcome: the same rows, the same attributes jsonb byte for byte, the same rejected spans,
reasons and counts, or the same error. A crash, a sanitizer report or a difference stops
the run: the input is kept in the artifacts folder, minimised, and printed as a bytes
literal for a regression test in tests/tracestore/test_native_decode.py.

Seeds: the payloads recorded from the instrumentation packages
(tests/fixtures/instrumentations/*.pb), the SDK recording (tests/fixtures/otlp), the
hostile inputs of the decoder's tests (malformed bodies, invalid ids, NUL, long and deeply
nested values, open enums, extreme timestamps, unknown and reordered fields) and a few of
bench/ingest.py's requests.

Reports libFuzzer's figures: executions, edges covered (``cov``), features (``ft``), the
corpus, and how many inputs the compiled decoder handled itself (the rest it hands to the
reference, which is then compared with itself: only the first kind tests it).

Needs clang (``clang``, or ``clang-19`` ... ``clang-14``); run as root on Debian or Ubuntu
without one, it installs Debian's ``clang`` package.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOW_NS = 1_750_000_000 * 10**9
# The default limits, and small ones under which ordinary values are cut and lists dropped.
LIMITS = ((64 * 1024, 512), (24, 6))
_CHILD = "MICROLENS_FUZZ_CHILD"
_STATS_EVERY = 2000


# -- the sanitised build --------------------------------------------------------------------


def find_clang() -> str | None:
    for name in ["clang", *(f"clang-{v}" for v in range(21, 13, -1))]:
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_clang() -> str:
    clang = find_clang()
    if clang:
        return clang
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("fuzz: installing clang (Debian package)", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "clang"],
            check=True,
            env=env,
        )
        clang = find_clang()
        if clang:
            return clang
    sys.exit("fuzz: needs clang (install Debian's clang package)")


def build_sanitised(clang: str, out_dir: Path) -> Path:
    """tracestore/_otlp.c with ASan + UBSan + coverage, as tracestore._otlp, in out_dir.

    Compiled with the sanitizers, linked without their runtime: the one atheris ships is
    preloaded into the fuzzing process (so no clang runtime package is needed)."""
    target = out_dir / f"_otlp{sysconfig.get_config_var('EXT_SUFFIX')}"
    obj = out_dir / "_otlp.o"
    compile_command = [
        clang,
        "-c",
        "-fPIC",
        "-O1",
        "-g",
        "-std=c11",
        "-fno-omit-frame-pointer",
        "-fsanitize=address,undefined,fuzzer-no-link",
        "-fno-sanitize-recover=all",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        f"-I{sysconfig.get_paths()['include']}",
        str(ROOT / "tracestore" / "_otlp.c"),
        "-o",
        str(obj),
    ]
    subprocess.run(compile_command, check=True)
    subprocess.run([clang, "-shared", str(obj), "-o", str(target)], check=True)
    return target


def preloads() -> str:
    """The sanitizer runtime with libFuzzer, and atheris's custom-mutator hook: libFuzzer
    looks its hooks up as weak symbols when it is loaded, so they must be loaded with it."""
    import atheris

    hook = next((Path(atheris.path()) / "atheris").glob("custom_mutator.*.so"))
    return f"{Path(atheris.path()) / 'asan_with_fuzzer.so'}:{hook}"


# -- seeds ----------------------------------------------------------------------------------


def seed_bodies() -> list[bytes]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    from bench.ingest import build_requests

    bodies = [
        p.read_bytes() for p in sorted((ROOT / "tests/fixtures/instrumentations").glob("*.pb"))
    ]
    bodies.append(gzip.decompress((ROOT / "tests/fixtures/otlp/sdk_traces.pb.gz").read_bytes()))
    bodies += [body for body, _ in build_requests(40, 8, seed=1)]

    def value(v: Any) -> AnyValue:
        if isinstance(v, bool):
            return AnyValue(bool_value=v)
        if isinstance(v, int):
            return AnyValue(int_value=v)
        if isinstance(v, float):
            return AnyValue(double_value=v)
        if isinstance(v, bytes):
            return AnyValue(bytes_value=v)
        if isinstance(v, list):
            out = AnyValue()
            out.array_value.values.extend(value(x) for x in v)
            return out
        if isinstance(v, dict):
            out = AnyValue()
            out.kvlist_value.values.extend(KeyValue(key=k, value=value(x)) for k, x in v.items())
            return out
        return AnyValue(string_value=v)

    def request(*spans: Span, resource: dict[str, Any] | None = None) -> bytes:
        req = ExportTraceServiceRequest()
        resource_spans = req.resource_spans.add()
        for k, v in (resource or {"service.name": "svc"}).items():
            resource_spans.resource.attributes.add(key=k, value=value(v))
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "scope"
        scope_spans.scope.version = "1.0"
        scope_spans.spans.extend(spans)
        return req.SerializeToString()

    def span(attrs: dict[str, Any] | None = None, **fields: Any) -> Span:
        s = Span(
            trace_id=fields.pop("trace_id", b"\x01" * 16),
            span_id=fields.pop("span_id", b"\x02" * 8),
            name=fields.pop("name", "classify"),
            start_time_unix_nano=fields.pop("start", NOW_NS - 10**9),
            end_time_unix_nano=fields.pop("end", NOW_NS - 10**9 + 5 * 10**6),
            **fields,
        )
        for k, v in (attrs or {}).items():
            s.attributes.add(key=k, value=value(v))
        return s

    deep = AnyValue(string_value="leaf")
    for _ in range(30):
        outer = AnyValue()
        outer.array_value.values.append(deep)
        deep = outer
    deep_span = span()
    deep_span.attributes.append(KeyValue(key="deep", value=deep))
    event_span = span(parent_span_id=b"\x03" * 8, kind=3, status=Status(code=2, message="boom"))
    event = event_span.events.add(name="exception", time_unix_nano=NOW_NS - 1)
    event.attributes.add(key="exception.message", value=value("bad"))
    link = event_span.links.add(trace_id=b"\xab" * 16, span_id=b"\xcd" * 8, trace_state="k=v")
    link.attributes.add(key="why", value=value("retry"))
    bodies += [
        # The malformed-body table of the decoder's tests.
        b"",
        b"\x0a\x00",
        b"\x0a\x05\x12\x03\x12\x01\x0a",
        b"\x0a\xff\xff\xff\xff\x0f",
        b"\xff" * 12,
        b"\x0b\x0c",
        b"\x0f",
        b"\x00\x01",
        # Hostile values and ids.
        request(
            span(
                {
                    "text": 'quote " backslash \\ \n \t \x07 é 漢字 🙂',
                    "int": -(2**63),
                    "float": 0.1,
                    "nan": float("nan"),
                    "inf": float("-inf"),
                    "yes": True,
                    "list": [1, "two", 3.5, [True, {"deep": "x"}]],
                    "map": {"a": {"b": {"c": [1, 2]}}},
                    "empty": [],
                    "": "empty key",
                    "nul": "a\x00b",
                    "long": "é" * 40,
                    "bytes": b"\x00\xff",
                }
            )
        ),
        request(span({f"k{i}": i for i in range(10)})),
        request(deep_span),
        request(event_span),
        request(
            span(trace_id=b"\x00" * 16),
            span(trace_id=b"\x01" * 15),
            span(span_id=b""),
            span(parent_span_id=b"\x01" * 7),
            span(parent_span_id=b"\x00" * 8, attrs={"long": "x" * 100}),
            span(span_id=b"\x09" * 8),
        ),
        request(span(start=0, end=0), span(start=NOW_NS, end=NOW_NS - 5)),
        request(span(start=NOW_NS, end=2**64 - 1), span(start=2**64 - 1, end=2**64 - 1)),
        request(span(kind=-1, status=Status(code=2**31 - 1)), span(kind=40000)),
        request(span(name="n" * 40, status=Status(message="m\x00" * 20))),
    ]
    # A span with its status first and unknown varint, fixed32 and bytes fields.
    reordered = b"\x7a\x02\x18\x01" + b"\x98\x06\x01\x95\x06abcd\x8a\x06\x02hi"
    reordered += span({"a": 1}).SerializeToString()
    scope = b"\x12" + bytes([len(reordered)]) + reordered
    bodies.append(b"\x0a" + bytes([len(scope) + 2]) + b"\x12" + bytes([len(scope)]) + scope)
    return bodies


# -- one input ------------------------------------------------------------------------------


class Mismatch(AssertionError):
    pass


def outcome(body: bytes, native: bool, limits: Any) -> Any:
    from tracestore.decode import decode_protobuf
    from tracestore.otlp_protobuf import OtlpProtobufError
    from tracestore.span_copy import jsonb as _jsonb
    from tracestore.span_fields import ATTRIBUTES

    try:
        result = decode_protobuf(body, limits, NOW_NS, native=native)
    except OtlpProtobufError as exc:
        return ("error", str(exc))
    except Exception as exc:  # a finding: no body may make the decoder raise anything else
        return ("raised", type(exc).__name__, str(exc))
    given = [*result.attributes_json, *[None] * (len(result.rows) - len(result.attributes_json))]
    encoded = [
        g if g is not None else _jsonb(row[ATTRIBUTES])
        for g, row in zip(given, result.rows, strict=True)
    ]
    return (
        result.rows,
        encoded,
        result.rejected,
        result.reasons,
        result.truncated_values,
        result.dropped_attributes,
    )


def check(body: bytes, counts: dict[str, int], artifacts: Path | None = None) -> None:
    from tracestore import decode
    from tracestore.span_copy import jsonb as _jsonb
    from tracestore.span_fields import ATTRIBUTES

    for max_value_bytes, max_attributes in LIMITS:
        limits = decode.Limits(max_value_bytes=max_value_bytes, max_attributes=max_attributes)
        handled = decode._otlp.decode(
            body,
            NOW_NS,
            max_value_bytes,
            max_attributes,
            decode._Sanitiser(limits, decode.DecodeResult()).text,
        )
        counts["native" if handled is not None else "general"] += 1
        reference = outcome(body, native=False, limits=limits)
        compiled = outcome(body, native=True, limits=limits)
        if compiled != reference:
            raise Mismatch(
                f"limits {limits}: the compiled decoder gave\n  {compiled!r}\n"
                f"the reference\n  {reference!r}"
            )
        if reference[0] == "raised":
            # Both decoders raised the same: the shared code (the normaliser) is at fault,
            # not the compiled decoder. Kept as a finding; the run goes on.
            counts["raises"] += 1
            if artifacts is not None and counts["raises"] <= 20:
                name = f"raises-{reference[1]}-{hashlib.sha1(body).hexdigest()}"  # noqa: S324
                (artifacts / name).write_bytes(body)
            return
        if reference[0] != "error":
            # The reference's own jsonb is what span_copy.jsonb writes.
            assert reference[1] == [_jsonb(row[ATTRIBUTES]) for row in reference[0]]


# -- structure-aware mutations --------------------------------------------------------------
# Most byte-level mutations of a protobuf body make it invalid, and the compiled decoder
# hands invalid bodies to the reference at once: memory safety is tested on them, agreement
# hardly. Half of the mutations therefore parse the body and change one thing the decoder
# must get right (a value of any type, ids, timestamps, enums, texts, nesting, repeats), so
# the result is still a request and the compiled path is compared.

_TEXT_PIECES = ("a", "key", "é", "漢字", "🙂", "\x00", '"', "\\", "\n", "\x1f", "\x7f", "\u2028")
_DOUBLES = (0.0, -0.0, 0.1, 1e308, -1e308, 5e-324, float("nan"), float("inf"), float("-inf"))
_INTS = (0, 1, -1, 2**31, -(2**31), 2**53 + 1, 2**63 - 1, -(2**63))
_TIMES = (0, 1, NOW_NS, NOW_NS - 1, NOW_NS + 10**15, 2**63, 2**64 - 1)
_ENUMS = (0, 1, 2, 3, -1, 2**15 - 1, 2**15, 40000, 2**31 - 1, -(2**31))


def _text(rng: Any) -> str:
    if rng.random() < 0.1:
        return rng.choice(_TEXT_PIECES) * rng.choice((7, 8, 9, 16, 17, 25, 100))
    return "".join(rng.choice(_TEXT_PIECES) for _ in range(rng.randrange(6)))


def _any_value(value: Any, rng: Any, depth: int = 0) -> None:
    kind = rng.randrange(9 if depth < 20 else 6)
    if kind == 0:
        value.string_value = _text(rng)
    elif kind == 1:
        value.int_value = rng.choice(_INTS)
    elif kind == 2:
        value.double_value = rng.choice(_DOUBLES)
    elif kind == 3:
        value.bool_value = rng.random() < 0.5
    elif kind == 4:
        value.bytes_value = bytes(rng.randrange(256) for _ in range(rng.randrange(4)))
    elif kind == 5:
        value.Clear()  # no value set
    elif kind in (6, 7):
        array = value.array_value
        for _ in range(rng.randrange(3)):
            _any_value(array.values.add(), rng, depth + 1)
    else:
        kvlist = value.kvlist_value
        for _ in range(rng.randrange(3)):
            item = kvlist.values.add(key=_text(rng))
            _any_value(item.value, rng, depth + 1)


def _attributes(attributes: Any, rng: Any) -> None:
    choice = rng.randrange(5)
    if choice == 0 and len(attributes):
        attributes.add(key=rng.choice(attributes).key)  # a key sent twice
        _any_value(attributes[-1].value, rng)
    elif choice == 1:
        for i in range(rng.choice((5, 6, 7, 511, 512, 513))):
            attributes.add(key=f"k{i}").value.int_value = i
    elif choice == 2:
        key = rng.choice(
            (
                "service.name",
                "micro_model.name",
                "llm.token_count.prompt",
                "retry.attempt",
                "micro_model.confidence",
                "route.fallback",
            )
        )
        _any_value(attributes.add(key=key).value, rng)
    else:
        _any_value(attributes.add(key=_text(rng)).value, rng)


def structured_mutation(data: bytes, rng: Any) -> bytes | None:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        request = ExportTraceServiceRequest.FromString(data)
    except (DecodeError, RecursionError):
        return None
    scopes = [ss for rs in request.resource_spans for ss in rs.scope_spans]
    spans = [span for ss in scopes for span in ss.spans]
    if not spans:
        return None
    span = rng.choice(spans)
    op = rng.randrange(10)
    if op == 0:
        _attributes(span.attributes, rng)
    elif op == 1:
        length = rng.choice((0, 1, 7, 8, 9, 15, 16, 17))
        fill = rng.choice((b"\x00", b"\x01", b"\xff"))
        which = rng.choice(("trace_id", "span_id", "parent_span_id"))
        setattr(span, which, fill * length)
    elif op == 2:
        span.start_time_unix_nano = rng.choice(_TIMES)
        span.end_time_unix_nano = rng.choice(_TIMES)
    elif op == 3:
        span.kind = rng.choice(_ENUMS)  # type: ignore[assignment]
        span.status.code = rng.choice(_ENUMS)  # type: ignore[assignment]
    elif op == 4:
        span.name = _text(rng)
        span.status.message = _text(rng)
    elif op == 5:
        event = span.events.add(name=_text(rng), time_unix_nano=rng.choice(_TIMES))
        _attributes(event.attributes, rng)
    elif op == 6:
        link = span.links.add(trace_id=bytes(rng.randrange(256) for _ in range(16)))
        link.span_id = b"\x07" * rng.choice((0, 8))
        link.trace_state = _text(rng)
        _attributes(link.attributes, rng)
    elif op == 7:
        scope = rng.choice(scopes)
        scope.scope.name = _text(rng)
        scope.scope.version = _text(rng)
        _attributes(scope.scope.attributes, rng)
    elif op == 8:
        _attributes(rng.choice(request.resource_spans).resource.attributes, rng)
    else:
        rng.choice(scopes).spans.append(span)  # the same span twice
    return request.SerializeToString()


# -- the fuzzing process (sanitiser runtime preloaded) --------------------------------------


def child(module: Path, stats_file: Path, argv: list[str]) -> None:
    import importlib.util

    import atheris

    import tracestore

    # The sanitised build stands in for tracestore._otlp before anything imports decode.py.
    spec = importlib.util.spec_from_file_location("tracestore._otlp", module)
    assert spec and spec.loader
    native = importlib.util.module_from_spec(spec)
    sys.modules["tracestore._otlp"] = native
    spec.loader.exec_module(native)
    tracestore._otlp = native  # type: ignore[attr-defined]
    with atheris.instrument_imports(include=["tracestore"]):
        from tracestore import decode, otlp_protobuf  # noqa: F401
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microlens.settings")
    import django

    django.setup()  # span_copy.jsonb, the encoder the reference's jsonb is checked with
    assert decode._otlp is native and decode.NATIVE

    counts = {"inputs": 0, "native": 0, "general": 0, "structured": 0, "raises": 0}
    artifacts = Path(os.environ["MICROLENS_FUZZ_ARTIFACTS"])
    started = time.monotonic()

    def one_input(data: bytes) -> None:
        counts["inputs"] += 1
        check(data, counts, artifacts)
        if counts["inputs"] % _STATS_EVERY == 0 or counts["raises"] == 1:
            counts["seconds"] = int(time.monotonic() - started)
            stats_file.write_text(json.dumps(counts))

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            mutated = structured_mutation(data, rng)
            if mutated is not None and len(mutated) <= max_size:
                counts["structured"] += 1
                return mutated
        return atheris.Mutate(data, max_size)

    atheris.Setup(argv, one_input, custom_mutator=mutate)
    atheris.Fuzz()


def run(args: argparse.Namespace) -> int:
    clang = ensure_clang()
    work = Path(tempfile.mkdtemp(prefix="microlens-fuzz-"))
    try:
        module = build_sanitised(clang, work)
        corpus = Path(args.corpus) if args.corpus else work / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        seeds = work / "seeds"
        seeds.mkdir()
        for i, body in enumerate(seed_bodies()):
            (seeds / f"seed-{i:03d}").write_bytes(body)
        artifacts = Path(args.artifacts)
        artifacts.mkdir(parents=True, exist_ok=True)
        stats_file = work / "stats.json"
        # The symbolizer must not inherit the preloaded runtime (it would fail to load).
        symbolizer = shutil.which("llvm-symbolizer") or shutil.which(f"llvm-symbolizer-{14}")
        wrapper = work / "llvm-symbolizer"
        wrapper.write_text(f'#!/bin/sh\nunset LD_PRELOAD\nexec {symbolizer} "$@"\n')
        wrapper.chmod(0o755)
        env = {
            **os.environ,
            _CHILD: str(module),
            "MICROLENS_FUZZ_STATS": str(stats_file),
            "MICROLENS_FUZZ_ARTIFACTS": str(artifacts),
            "LD_PRELOAD": preloads(),
            "PYTHONMALLOC": "malloc",
            # Python's own allocations are never freed at exit: leaks are not findings here.
            "ASAN_OPTIONS": "detect_leaks=0:allocator_may_return_null=1",
            "ASAN_SYMBOLIZER_PATH": str(wrapper),
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
            "MICROLENS_HOME": str(work / "home"),
        }
        if args.reproduce:
            fuzz_args = [args.reproduce]
        else:
            fuzz_args = [
                f"-max_total_time={args.seconds}",
                f"-max_len={args.max_len}",
                "-timeout=20",
                "-rss_limit_mb=4096",
                "-print_final_stats=1",
                f"-artifact_prefix={artifacts}/",
                str(corpus),
                str(seeds),
            ]
        print(
            f"fuzz: {module.name} built with {Path(clang).name} (ASan, UBSan, coverage); "
            f"{len(list(seeds.iterdir()))} seeds; {args.seconds} s",
            file=sys.stderr,
        )
        log_path = work / "fuzz.log"
        started = time.monotonic()
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, __file__, *fuzz_args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            code = proc.wait()
        elapsed = time.monotonic() - started
        text = log_path.read_text(errors="replace")
        raised = report(text, stats_file, elapsed, code, args, artifacts)
        if args.keep_log:
            shutil.copy(log_path, args.keep_log)
        return 0 if code == 0 and not raised else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(
    text: str,
    stats_file: Path,
    elapsed: float,
    code: int,
    args: argparse.Namespace,
    artifacts: Path,
) -> int:
    status = [line for line in text.splitlines() if re.match(r"#\d+\s", line)]
    final = {k: int(v) for k, v in re.findall(r"stat::(\w+):\s+(\d+)", text)}
    last = status[-1] if status else ""
    cov = re.search(r"cov: (\d+)", last)
    ft = re.search(r"ft: (\d+)", last)
    corp = re.search(r"corp: (\d+)/(\S+)", last)
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    print(f"wall time            {elapsed:.0f} s (budget {args.seconds} s)")
    print(f"executions           {final.get('number_of_executed_units', 'n/a')}")
    print(f"executions/s         {final.get('average_exec_per_sec', 'n/a')}")
    print(f"edges covered (cov)  {cov.group(1) if cov else 'n/a'}")
    print(f"features (ft)        {ft.group(1) if ft else 'n/a'}")
    print(f"corpus               {corp.group(1) + ' inputs, ' + corp.group(2) if corp else 'n/a'}")
    print(f"peak RSS             {final.get('peak_rss_mb', 'n/a')} MB")
    if stats:
        total = stats["native"] + stats["general"]
        print(
            f"decoded natively     {stats['native']} of {total} decodes "
            f"({100 * stats['native'] / max(total, 1):.1f} %, at {stats['seconds']} s)"
        )
        print(f"structured mutations {stats['structured']} of {stats['inputs']} inputs")
    raised = sorted(artifacts.glob("raises-*"))
    if stats.get("raises"):
        print(f"\nFINDING: {stats['raises']} input(s) made both decoders raise (not a rejection):")
        for path in raised:
            print(f"  {path.name}: {path.read_bytes()!r}"[:400])
    if code != 0:
        crashes = sorted(artifacts.glob("crash-*"), key=lambda p: p.stat().st_mtime)
        tail = "\n".join(text.splitlines()[-60:])
        print(f"\nFINDING (exit {code}):\n{tail}")
        if crashes:
            print(f"\ninput ({crashes[-1]}):\n{crashes[-1].read_bytes()!r}")
    elif not stats.get("raises"):
        print("findings             none")
    return int(stats.get("raises", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=300, help="time budget")
    parser.add_argument("--max-len", type=int, default=16384, help="longest input, bytes")
    parser.add_argument("--corpus", help="corpus folder to keep between runs")
    parser.add_argument(
        "--artifacts",
        default=str(Path(tempfile.gettempdir()) / "microlens-fuzz-artifacts"),
        help="where findings go (default: microlens-fuzz-artifacts in the temporary folder)",
    )
    parser.add_argument("--reproduce", help="run one input (an artifact) and stop")
    parser.add_argument("--keep-log", help="copy libFuzzer's log here")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    if os.environ.get(_CHILD):
        child(Path(os.environ[_CHILD]), Path(os.environ["MICROLENS_FUZZ_STATS"]), sys.argv)
    else:
        main()
