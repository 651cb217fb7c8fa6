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
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  echo "$want" > "$stamp"
fi
