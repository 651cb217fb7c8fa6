#!/usr/bin/env bash
# Set up .venv if needed, then run every test: unit tests of course_utils, the notebook pairing checks,
# and nbval executing every notebook in the ci profile. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
export COURSE_PROFILE=ci
# Two pytest workers (pytest-xdist), each taking whole files, so a notebook's cells run in order in one kernel;
# one thread each, so the two together use two cores. COURSE_TEST_WORKERS=0 runs everything in this process.
workers=${COURSE_TEST_WORKERS:-2}
if [ "$workers" != 0 ]; then
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  set -- -n "$workers" --dist loadfile "$@"
fi
exec .venv/bin/python -m pytest --nbval-lax --nbval-current-env --durations=0 "$@"
