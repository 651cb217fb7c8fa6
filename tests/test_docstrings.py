"""Docstrings that are true: every module names the notebooks that teach it, and "taught in / used in notebook N"
stands in a function's, class's or method's docstring only where notebook N's source uses that name."""

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import course_utils

NAMES_A_NOTEBOOK = re.compile(r"[Nn]otebooks? 0[1-6]|\b0[1-6]_[a-z]")
CLAIM = re.compile(r"\b(?:[Tt]aught|[Uu]sed) in:?\s+([^.;()]*)")
NOTEBOOKS = {p.stem[:2]: p.read_text() for p in (Path(__file__).parents[1] / "notebooks").glob("0[1-6]_*.py")}


def claimed_notebooks(doc: str) -> set[str]:
    """The notebooks a docstring says teach or use it: "used in notebooks 02 to 04", "Taught in notebook 05",
    "Taught in: 03_ddim_...", "used in every notebook" (all six)."""
    found = set()
    for phrase in CLAIM.findall(doc):
        if re.match(r"\s*every notebook\b", phrase):  # "used in every notebook": all six
            found |= set(NOTEBOOKS)
            continue
        for low, high in re.findall(r"\b0([1-6])\s+to\s+0([1-6])\b", phrase):
            found |= {f"0{i}" for i in range(int(low), int(high) + 1)}
        found |= set(re.findall(r"\b(0[1-6])(?:_[a-z]|\b)", phrase))
    return found


def modules():
    for info in pkgutil.iter_modules(course_utils.__path__):
        if info.name != "__main__":  # importing it runs the command line
            yield importlib.import_module(f"course_utils.{info.name}")


def public_objects():
    """Every public function and class of course_utils, and every public method of its classes."""
    for module in modules():
        for name, obj in vars(module).items():
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if obj.__module__ == module.__name__:
                yield module, name, obj
                if inspect.isclass(obj):
                    for method, member in vars(obj).items():
                        if not method.startswith("_") and inspect.isfunction(member):
                            yield module, method, member


def test_every_module_names_its_notebooks():
    missing = [m.__name__ for m in modules() if not NAMES_A_NOTEBOOK.search(m.__doc__ or "")]
    assert not missing, f"modules whose docstring names no notebook: {missing}"


def test_a_claimed_notebook_uses_the_name():
    false = [f"{m.__name__}.{name}: notebook {nb}" for m, name, obj in public_objects()
             for nb in sorted(claimed_notebooks(inspect.getdoc(obj) or ""))
             if not re.search(rf"\b{re.escape(name)}\b", NOTEBOOKS[nb])]
    assert not false, f"docstrings claim notebooks that never use the name: {false}"


def test_the_checks_can_fail():
    assert not NAMES_A_NOTEBOOK.search("Train the model; the notebooks use it.")
    assert NAMES_A_NOTEBOOK.search("Taught in notebook 03.") and NAMES_A_NOTEBOOK.search("see 02_ddpm_from_scratch")
    assert claimed_notebooks("Taught in notebook 01; used in notebooks 02 to 04 (x).") == {"01", "02", "03", "04"}
    assert claimed_notebooks("Used in every notebook (notebook 01 first).") == set(NOTEBOOKS)
    assert claimed_notebooks("Taught in: 05_unconditional_prior_adaptation.") == {"05"}
    assert not re.search(r"\bforward_chain\b", NOTEBOOKS["01"])  # a name notebook 01 does not use


def _imports_of_the_package(tree) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
    return names


def test_modules_import_each_other_only_at_the_top_and_without_a_circle():
    """No module of course_utils imports another inside a function, and the import graph has no circle (so the
    package reads from its lowest module up)."""
    folder = Path(course_utils.__file__).parent
    trees = {p.stem: ast.parse(p.read_text()) for p in folder.glob("*.py")}
    inside = [f"{name}.{fn.name}" for name, tree in trees.items() for fn in ast.walk(tree)
              if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for node in ast.walk(fn) if isinstance(node, ast.ImportFrom) and node.level >= 1]
    assert not inside, f"imports of course_utils modules inside functions: {inside}"
    graph = {name: _imports_of_the_package(tree) for name, tree in trees.items()}
    done: set[str] = set()

    def walk(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import circle: {' -> '.join(path + (name,))}"
        if name not in done:
            for dep in graph.get(name, ()):
                walk(dep, path + (name,))
            done.add(name)

    for name in graph:
        walk(name, ())
