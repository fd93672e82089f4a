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
the synthetic requests of tests/otlp_payloads.py (bench/ingest.py's load).

Reports libFuzzer's figures: executions, edges covered (``cov``), features (``ft``), the
corpus, and how many inputs the compiled decoder handled itself (the rest it hands to the
reference, which is then compared with itself: only the first kind tests it).

Needs clang (``clang``, or ``clang-19`` ... ``clang-14``); run as root on Debian or Ubuntu
without one, it installs Debian's ``clang`` package.
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.decoder_fuzz import (  # noqa: E402
    LIMITS,
    NOW_NS,
    outcome,
    seed_bodies,
    structured_mutation,
)

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


# -- one input ------------------------------------------------------------------------------


class Mismatch(AssertionError):
    pass


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
