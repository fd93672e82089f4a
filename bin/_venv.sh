# Sourced by bin/microlens and bin/test: create .venv and install the pinned
# dependencies once; later runs reinstall only when a requirements file changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MICROLENS_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

ensure_venv() {
  local want="$1"  # base or dev
  local stamp="$VENV/.microlens-$want"
  local digest
  digest=$(cat "$ROOT/requirements/"*.in "$ROOT/requirements/constraints.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] && [ -x "$VENV/bin/python" ]; then
    build_native
    return 0
  fi
  if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "microlens needs Python >= 3.11 (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11+" >&2
    exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo "microlens: creating virtualenv in $VENV" >&2
    "$PY" -m venv "$VENV"
  fi
  echo "microlens: installing dependencies ($want)" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c "$ROOT/requirements/constraints.txt" -r "$ROOT/requirements/$want.in"
  echo "$digest" > "$stamp"
  build_native
}

# The receivers' compiled protobuf decoder (tracestore/_otlp.c), built in place when it is
# missing or older than its source. Optional: without a C compiler the receivers decode in
# Python (slower), and the test suite's check that it is built fails.
build_native() {
  local built
  built="$ROOT/tracestore/_otlp$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
  if [ -f "$built" ] && [ "$built" -nt "$ROOT/tracestore/_otlp.c" ] && [ "$built" -nt "$ROOT/setup.py" ]; then
    return 0
  fi
  echo "microlens: building the compiled OTLP decoder" >&2
  (cd "$ROOT" && "$VENV/bin/python" setup.py --quiet build_ext --inplace >/dev/null 2>"$VENV/native-build.log") \
    || echo "microlens: the compiled decoder was not built (see $VENV/native-build.log): decoding in Python" >&2
}
