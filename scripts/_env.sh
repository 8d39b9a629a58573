# Shared by scripts/up and scripts/test: a project virtualenv with trialops installed, and a
# Java runtime plus Maven for the local Kafka broker. Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "trialops needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi

need_java=1
[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ] && need_java=0
if [ "$need_java" = 1 ] && { ! command -v java >/dev/null || ! command -v mvn >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing a Java runtime and Maven for the local Kafka broker..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      openjdk-17-jre-headless maven >/dev/null
  else
    echo "the local Kafka broker needs Java 17+ and Maven (or set KAFKA_BOOTSTRAP_SERVERS)" >&2
    exit 1
  fi
fi

# The PDF packets (trialops report) are rendered by WeasyPrint, which loads Pango from the system.
if ! ldconfig -p 2>/dev/null | grep -q 'libpangoft2-1.0.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Pango for the PDF reports..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      libpango-1.0-0 libpangoft2-1.0-0 >/dev/null
  else
    echo "note: trialops report needs Pango (Debian: libpango-1.0-0 libpangoft2-1.0-0)" >&2
  fi
fi

# The tests and the stack start hundreds of Python processes, each importing the project: the
# first to import a module compiles it for the others (into __pycache__, which git ignores),
# even where the environment says not to write bytecode (decision 72).
unset PYTHONDONTWRITEBYTECODE

if [ ! -x .venv/bin/python ]; then
  echo "creating .venv..." >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.trialops-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing trialops and its dependencies into .venv..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
  touch "$stamp"
fi
