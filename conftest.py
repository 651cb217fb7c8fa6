"""Test defaults: the ci profile, the offline MNIST pack when it sits beside the checkout, and a
throw-away outputs folder so tests never reuse (or clobber) a checkpoint from a real run."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("COURSE_PROFILE", "ci")
_offline = Path(__file__).resolve().parent.parent / "shared" / "data" / "mnist-offline"
if "COURSE_DATA_DIR" not in os.environ and (_offline / "MNIST" / "raw").is_dir():
    os.environ["COURSE_DATA_DIR"] = str(_offline)
os.environ.setdefault("COURSE_OUTPUT_DIR", tempfile.mkdtemp(prefix="course-test-outputs-"))
# nbval runs each notebook's kernel in notebooks/: make a relative data or output folder absolute first
for _name in ("COURSE_DATA_DIR", "COURSE_OUTPUT_DIR"):
    if os.environ.get(_name, "").strip():
        os.environ[_name] = str(Path(os.environ[_name]).expanduser().resolve())
