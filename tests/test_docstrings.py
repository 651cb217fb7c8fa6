"""Every public function and class of course_utils names the notebook that teaches it (the README promises it)."""

import importlib
import inspect
import pkgutil
import re

import course_utils

NAMES_A_NOTEBOOK = re.compile(r"[Nn]otebooks? 0[1-6]|\b0[1-6]_[a-z]")


def public_objects():
    for info in pkgutil.iter_modules(course_utils.__path__):
        if info.name == "__main__":  # importing it runs the command line
            continue
        module = importlib.import_module(f"course_utils.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if obj.__module__ == module.__name__:
                yield f"{module.__name__}.{name}", obj


def test_every_public_function_names_its_notebook():
    missing = [name for name, obj in public_objects() if not NAMES_A_NOTEBOOK.search(inspect.getdoc(obj) or "")]
    assert not missing, f"{len(missing)} public functions or classes do not name their notebook: {missing}"


def test_the_check_can_fail():
    assert not NAMES_A_NOTEBOOK.search("Train the model; the notebooks use it.")
    assert NAMES_A_NOTEBOOK.search("Taught in notebook 03.") and NAMES_A_NOTEBOOK.search("see 02_ddpm_from_scratch")
