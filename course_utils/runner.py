"""Running the notebooks top to bottom: ``python -m course_utils run`` and ``./run_course.sh``.

Taught in: the README (the course's main job: notebooks 01 to 06 in order). Each notebook runs in a fresh kernel of
this very Python environment, in the chosen profile; its executed copy goes to ``outputs/executed/<profile>/``, its
figures to ``outputs/figures/<profile>/``, and the time it took (in all and per section) to
``outputs/run_summary_<profile>.json``. While a notebook runs, the runner prints the section it is in and its latest
progress line at least every 30 seconds; when it ends, its wall time and its key result (the last output line that
starts with ``key result:``).
"""

from __future__ import annotations

import json
import os
import html
import platform
import re
import tempfile
import threading
import time
from pathlib import Path

from .config import get_device, get_profile, hardware, output_dir
from .data import MNISTNotFoundError, load_mnist
from .publishing import _root, notebook_sources

HEARTBEAT_SECONDS = 20  # the longest the runner stays silent while a notebook runs
KEY_RESULT = "key result:"


def check_mnist() -> None:
    """Load (and if needed download) MNIST once before any notebook runs; stop with the data error if it is missing."""
    try:
        n_train, n_test = len(load_mnist("train")), len(load_mnist("test"))
    except MNISTNotFoundError as missing:
        raise SystemExit(str(missing)) from None
    print(f"MNIST: {n_train} training and {n_test} test images", flush=True)


def _absolute_env_paths() -> None:
    """Kernels run in notebooks/, so a relative COURSE_DATA_DIR / COURSE_OUTPUT_DIR is resolved here, once."""
    for name in ("COURSE_DATA_DIR", "COURSE_OUTPUT_DIR"):
        value = os.environ.get(name, "").strip()
        if value:
            os.environ[name] = str(Path(value).expanduser().resolve())


def _kernel_manager():
    """A kernel of this very Python environment (not whatever 'python3' kernelspec the user has).

    On Linux and macOS it talks to the kernel over local IPC sockets rather than TCP ports (nothing to eavesdrop
    on, and no warning from the kernel about unencrypted TCP).
    """
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    class ThisEnvironment(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                          **ipykernel.kernelspec.get_kernel_dict())

    if os.name != "posix":
        return KernelManager(kernel_name="course-env", kernel_spec_manager=ThisEnvironment())
    # IPC sockets are files: give them an absolute path, since the kernel runs in notebooks/ and we do not
    sockets = Path(tempfile.mkdtemp(prefix="course-kernel-")) / "kernel"
    return KernelManager(kernel_name="course-env", kernel_spec_manager=ThisEnvironment(), transport="ipc",
                         ip=str(sockets))


def _headings(nb) -> list[str]:
    """For every cell, the latest markdown heading at or before it (the section the cell belongs to)."""
    current, out = "", []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("## "):
                    current = line[3:].strip()
        out.append(current)
    return out


def _last_line(text: str) -> str:
    """The last non-empty line of streamed text, where a progress bar's carriage returns also end a line."""
    lines = [part.strip() for part in text.replace("\r", "\n").split("\n") if part.strip()]
    return lines[-1] if lines else ""


class _Progress:
    """Prints '[label mm:ss] section: latest output' whenever HEARTBEAT_SECONDS pass without a print, and adds up
    the seconds spent in each section (``seconds_per_section``: from one code cell's start to the next's)."""

    def __init__(self, label: str, headings: list[str]):
        self.label, self.headings = label, headings
        self.start = self.last_print = self.section_start = time.monotonic()
        self.section, self.latest = "", ""
        self.seconds_per_section: dict[str, float] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _close_section(self, now: float) -> None:
        name = self.section or "kernel start"
        self.seconds_per_section[name] = self.seconds_per_section.get(name, 0.0) + now - self.section_start
        self.section_start = now

    def cell(self, index: int) -> None:
        with self.lock:
            self._close_section(time.monotonic())
            self.section = self.headings[index] if index < len(self.headings) else self.section

    def output(self, text: str) -> None:
        line = _last_line(text)
        if line:
            with self.lock:
                self.latest = line

    def _beat(self) -> None:
        while not self.done.wait(1.0):
            if time.monotonic() - self.last_print < HEARTBEAT_SECONDS:
                continue
            with self.lock:
                minutes, seconds = divmod(int(time.monotonic() - self.start), 60)
                latest = f": {self.latest[:110]}" if self.latest else ""
                print(f"  [{self.label} {minutes:02d}:{seconds:02d}] {self.section or 'setup'}{latest}", flush=True)
                self.last_print = time.monotonic()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        with self.lock:
            self._close_section(time.monotonic())
        self.thread.join()


def _progress_text(msg: dict) -> str | None:
    """What a kernel message says about progress: printed text, or the text of a progress-bar widget update
    (in a kernel, ``tqdm.auto`` draws an ipywidgets bar whose counter is an HTML widget's string value)."""
    content = msg.get("content", {})
    if msg.get("msg_type") == "stream":
        return content.get("text", "")
    if msg.get("msg_type") == "comm_msg":
        value = content.get("data", {}).get("state", {}).get("value")
        if isinstance(value, str) and re.search(r"\d+/\d+", value):
            return html.unescape(re.sub(r"<[^>]+>", " ", value)).replace("\xa0", " ")  # tqdm writes &lt; and &nbsp;
    return None


def key_result(nb) -> str | None:
    """The last output line of an executed notebook that starts with 'key result:' (its headline number)."""
    lines = [line.strip() for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "stream"
             for line in out.get("text", "").splitlines()]
    return next((line for line in reversed(lines) if line.lower().startswith(KEY_RESULT)), None)


def run_notebooks(profile: str, names: list[str] | None = None, timeout: int = 3600) -> dict:
    """Execute the notebooks (all, or those whose name starts with one of ``names``) in ``profile``; ``./run_course.sh``
    (the README's main job) runs them all. The run summary keeps the entries of notebooks a partial run left out
    from the last summary of the profile, each with the time it ran."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    class StreamingClient(NotebookClient):
        """An nbclient that tells a :class:`_Progress` which cell runs and what it prints."""

        progress: _Progress | None = None

        def process_message(self, msg, cell, cell_index):
            if self.progress is not None:
                if msg.get("msg_type") == "execute_input":
                    self.progress.cell(cell_index)
                text = _progress_text(msg)
                if text:
                    self.progress.output(text)
            return super().process_message(msg, cell, cell_index)

    get_profile(profile)  # fails early on an unknown name
    root = _root()
    sources = notebook_sources(root)
    if names:
        sources = [p for p in sources if any(p.stem.startswith(n.removesuffix(".py").removesuffix(".ipynb"))
                                               for n in names)]
        if not sources:
            raise SystemExit(f"no notebook matches {names}")
    os.environ["COURSE_PROFILE"] = profile
    _absolute_env_paths()
    check_mnist()
    executed = output_dir("executed", profile)  # one folder per profile: a ci run never replaces a cpu run's
    summary = {"profile": profile, "python": platform.python_version(), "machine": platform.machine(),
               "hardware": hardware(get_device()), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "notebooks": {}}
    path = output_dir() / f"run_summary_{profile}.json"
    if names and path.is_file():  # a partial run: the other notebooks' entries stay (sorted in course order below)
        last = json.loads(path.read_text())
        summary["notebooks"] = {name: {"ran": last.get("started", "")[:16], **entry}
                                for name, entry in last.get("notebooks", {}).items()}
    for py in sources:
        ipynb = py.with_suffix(".ipynb")
        out = executed / ipynb.name
        nb = nbformat.read(ipynb, as_version=4)
        print(f"[{profile}] running {ipynb.name} ({len(nb.cells)} cells) ...", flush=True)
        start, ran = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M")
        client = StreamingClient(nb, timeout=timeout, km=_kernel_manager(),
                                 resources={"metadata": {"path": str(py.parent)}})
        failed = None
        try:
            with _Progress(py.stem[:2], _headings(nb)) as progress:
                client.progress = progress
                client.execute()
        except CellExecutionError as err:
            failed = err
        seconds = time.perf_counter() - start
        if client.km.has_kernel:  # stop the kernel we started: nbclient leaves a kernel manager it was handed running
            client.km.shutdown_kernel(now=True)
        nbformat.write(nb, out)
        if failed is not None:
            raise SystemExit(f"[{profile}] {ipynb.name} failed: {failed.ename}: {failed.evalue}\n"
                             f"the executed notebook with the full traceback: {out}")
        result = key_result(nb)
        summary["notebooks"][py.stem] = {"seconds": round(seconds, 1), "executed": str(out),
                                         "key_result": result, "ran": ran,
                                         "seconds_per_section": {name: round(sec, 1) for name, sec
                                                                 in progress.seconds_per_section.items()}}
        print(f"[{profile}] {ipynb.name} done in {seconds / 60:.1f} min -> {out}", flush=True)
        if result:
            print(f"[{profile}] {result}", flush=True)
    order = [p.stem for p in notebook_sources(root)]
    summary["notebooks"] = dict(sorted(summary["notebooks"].items(),
                                        key=lambda item: order.index(item[0]) if item[0] in order else len(order)))
    path.write_text(json.dumps(summary, indent=2))
    print(f"summary: {path}\nfigures: {output_dir('figures', profile)}")
    return summary
