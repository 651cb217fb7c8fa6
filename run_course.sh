#!/usr/bin/env bash
# The course's main job: set up .venv if needed, then execute every notebook top to bottom.
#   ./run_course.sh                 profile from $COURSE_PROFILE, else full with CUDA and cpu without
#   ./run_course.sh cpu             a chosen profile: ci, cpu or full
#   ./run_course.sh cpu 02          only the notebooks whose names start with 02
# Executed notebooks go to outputs/executed/, figures to outputs/figures/, timings to outputs/run_summary_<profile>.json.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
profile=${1:-}
[ $# -gt 0 ] && shift
exec .venv/bin/course run ${profile:+--profile "$profile"} "$@"
