#!/usr/bin/env bash
# Set up .venv if needed, then run every test: unit tests of course_utils, the notebook pairing checks,
# and nbval executing every notebook in the ci profile. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
export COURSE_PROFILE=ci
exec .venv/bin/python -m pytest --nbval-lax --nbval-current-env --durations=0 "$@"
