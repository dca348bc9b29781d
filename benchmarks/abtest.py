"""Helpers of the A/B benchmarks: run two code trees (old / new) interleaved and compare medians.

Each side is a persistent worker process started with ``PYTHONPATH=<tree>``, so that both
import *their own* ``repyolo``; the parent sends one command per line on the worker's stdin and
reads one JSON line back. Alternating A B A B ... spreads the machine's speed drift (it changes
by up to 1.8x within minutes when other jobs share the cores) evenly over both sides; medians,
the median of the per-pair ratios and process CPU time (less sensitive to competing load than
wall time) are reported.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_old_tree() -> Path:
    """The baseline worktree (41fdb6b) beside this one: ``$REPYOLO_OLD_TREE`` or ``../base41``."""
    return Path(os.environ.get("REPYOLO_OLD_TREE", REPO.parent / "base41"))


NEUTRAL_CWD = tempfile.gettempdir()  # children never start inside a tree: `python -m` would import from there


def run_repyolo(tree: Path, argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m repyolo.cli ARGV`` importing ``repyolo`` from ``tree`` (checked once per tree),
    started in a neutral folder (paths in ``argv`` must be absolute)."""
    env = env if env is not None else tree_env(tree)
    check_tree(tree, env)
    return subprocess.run([sys.executable, "-m", "repyolo.cli", *argv], env=env, cwd=NEUTRAL_CWD,
                          capture_output=True, text=True)


_checked: set = set()


def check_tree(tree: Path, env: dict | None = None) -> None:
    """Fail loudly unless a child process with this environment imports repyolo from ``tree``."""
    key = str(Path(tree).resolve())
    if key in _checked:
        return
    out = subprocess.run([sys.executable, "-c", "import repyolo; print(repyolo.__file__)"],
                         env=env or tree_env(tree), cwd=NEUTRAL_CWD, capture_output=True, text=True)
    where = out.stdout.strip()
    if not where.startswith(key + "/"):
        raise RuntimeError(f"a child meant to run {key} imports repyolo from {where or out.stderr[-500:]}")
    _checked.add(key)


def tree_env(tree: Path, threads: int | None = None, extra: dict | None = None) -> dict:
    """The environment of a process that must import ``repyolo`` from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    env.update(extra or {})
    return env


class Worker:
    """A persistent worker process (``python SCRIPT --worker ...``) importing repyolo from ``tree``."""

    def __init__(self, name: str, tree: Path, argv: list[str], threads: int | None = None, cwd: str | None = None,
                 log: str | None = None, env: dict | None = None):
        self.name, self.log = name, log
        err = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (closed with the process)
        check_tree(tree, tree_env(tree, threads, env))
        self.proc = subprocess.Popen([sys.executable, *argv], env=tree_env(tree, threads, env), cwd=cwd or NEUTRAL_CWD,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                     bufsize=1)
        self.ready = self.read()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            tail = Path(self.log).read_text()[-3000:] if self.log and Path(self.log).is_file() else ""
            raise RuntimeError(f"worker {self.name} died (exit code {self.proc.wait()}):\n{tail}")
        return json.loads(line)

    def ask(self, command: dict) -> dict:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - a benchmark never hangs on a dead worker
            self.proc.kill()


def serve(handler) -> None:
    """Worker side: print a ready line, then answer one JSON command per stdin line with ``handler``."""
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(handler(json.loads(line))), flush=True)


def summary(a: list[float], b: list[float]) -> dict:
    """Medians of both sides, the ratio of medians and the median of the pairwise ratios ``a / b``."""
    pairs = [x / y for x, y in zip(a, b) if y > 0]
    return {"a": statistics.median(a), "b": statistics.median(b),
            "ratio_of_medians": statistics.median(a) / statistics.median(b),
            "median_pair_ratio": statistics.median(pairs) if pairs else float("nan"), "n": len(pairs)}


def start_load(n: int) -> list[subprocess.Popen]:
    """``n`` competing CPU-bound processes (``while True: pass``); stop them with :func:`stop_load`."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"
