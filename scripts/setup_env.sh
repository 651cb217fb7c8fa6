# Sourced by run_course.sh and run_tests.sh: make .venv (once) and install the course into it.
# Re-installs only when pyproject.toml changed since the last install. PYTHON picks the interpreter.
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "Python 3.10 or newer is needed (found $("$py" --version 2>&1)); set PYTHON=python3.11" >&2; exit 1; }
  echo "creating .venv with $("$py" --version 2>&1)"
  "$py" -m venv .venv
fi
stamp=.venv/.course-installed
want=$(cksum < pyproject.toml)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing the course and its tools into .venv (the first time takes a few minutes: PyTorch is large)"
  # pip's and the build backend's own chatter goes to a log that is shown only when something fails
  log=.venv/install.log
  if ! { .venv/bin/python -m pip install --quiet --upgrade pip && .venv/bin/python -m pip install --quiet -e ".[dev]"; } \
      > "$log" 2>&1; then
    cat "$log" >&2
    echo "installing the course failed (the log above is also in $log)" >&2
    exit 1
  fi
  echo "installed; pip's log: $log"
  echo "$want" > "$stamp"
fi
