"""What a run measures and how it is written down: process CPU and memory from /proc,
latency percentiles, the machine and commit, markdown tables for docs/benchmarks.md."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
RESULTS = REPO / "bench" / "results"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0])
    return out


class CpuMeter:
    """CPU seconds used by some processes between ``start`` and ``stop``."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.t0: dict[int, float] = {}
        self.used: dict[int, float] = {}

    def _read(self) -> dict[int, float]:
        out = {}
        for pid in self.pids:
            try:
                out[pid] = cpu_seconds(pid)
            except OSError:
                out[pid] = 0.0
        return out

    def start(self) -> None:
        self.t0 = self._read()

    def stop(self) -> float:
        t1 = self._read()
        self.used = {pid: t1[pid] - self.t0[pid] for pid in self.pids}
        return sum(self.used.values())


class CoreMeter:
    """How busy each core was (all processes, interrupts included) between start and stop."""

    def __init__(self) -> None:
        self.t0: dict[str, list[int]] = {}

    @staticmethod
    def _read() -> dict[str, list[int]]:
        out = {}
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    name, *vals = line.split()
                    out[name] = [int(v) for v in vals[:8]]
        return out

    def start(self) -> None:
        self.t0 = self._read()

    def stop(self) -> dict[str, float]:
        """Busy percent per core, e.g. {"cpu0": 99.0, "cpu1": 80.2}."""
        t1 = self._read()
        out = {}
        for name, vals in t1.items():
            d = [b - a for a, b in zip(self.t0[name], vals, strict=True)]
            total = sum(d)
            idle = d[3] + d[4]
            out[name] = 100.0 * (total - idle) / total if total else 0.0
        return out


def wait_quiet(max_wait: float = 60.0, threshold: float = 25.0) -> float:
    """Wait (up to ``max_wait`` s) until the machine is mostly idle; return its busy %.

    Other people's jobs share this machine; a run that starts while both cores are busy
    measures them. The busy % seen last is recorded with the results.
    """
    deadline = time.monotonic() + max_wait
    while True:
        meter = CoreMeter()
        meter.start()
        time.sleep(1.0)
        busy = meter.stop()
        avg = sum(busy.values()) / len(busy) if busy else 0.0
        if avg <= threshold or time.monotonic() >= deadline:
            return avg
        time.sleep(1.0)


def percentiles(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50 / p99 / max in milliseconds (nan when there is no sample)."""
    if not samples_ns:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan"),
                "samples": 0}
    s = sorted(samples_ns)
    n = len(s)

    def at(q: float) -> float:
        return s[min(n - 1, int(q * n))] / 1e6

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": s[-1] / 1e6, "samples": n}


def machine() -> dict[str, str]:
    """What the run ran on."""
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout \
                .splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {"cpu": model, "cores": str(os.cpu_count()), "memory": mem,
            "kernel": platform.release(), "python": platform.python_version()}


def commit() -> str:
    """The commit benchmarked (with '+dirty' when the tree has local changes)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True,
                              text=True).stdout.strip()
    sha = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "monitor")
    return sha + ("+dirty" if dirty else "")


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "—"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A markdown table: ``columns`` are (key, header)."""
    out = ["| " + " | ".join(h for _, h in columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(k, "")) for k, _ in columns) + " |")
    return "\n".join(out)


def header(title: str, command: str) -> str:
    m = machine()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"### {title}\n\n{now}, commit `{commit()}`, {m['cpu']}, {m['cores']} cores, "
            f"{m['memory']}, Linux {m['kernel']}, Python {m['python']}. "
            f"Command: `{command}`\n")


def record(section: str, name: str, rows: list[dict[str, Any]]) -> Path:
    """Append a markdown section to docs/benchmarks.md and the raw rows to bench/results/."""
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"{stamp}-{name}.json"
    path.write_text(json.dumps({"machine": machine(), "commit": commit(), "rows": rows},
                               indent=1, default=str))
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    DOC.write_text(text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n")
    return path


def start_profile(pid: int, seconds: float, path: Path) -> subprocess.Popen[bytes] | None:
    """Sample a Python server with py-spy (collapsed stacks of the thread holding the GIL,
    so: where its CPU goes) for ``seconds``, from core 1."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        print("py-spy not installed: pip install py-spy", file=sys.stderr)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [str(exe), "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "250",
         "-f", "raw", "-o", str(path), "--nonblocking", "--gil"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {1}))


def top_frames(path: Path, n: int = 25) -> str:
    """Self time and inclusive time per function from a py-spy collapsed-stack file."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        total += c
        frames = stack.split(";")
        leaf = frames[-1]
        own[leaf] = own.get(leaf, 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
    lines = [f"{total} samples; self %, inclusive %, function"]
    for f, c in sorted(own.items(), key=lambda kv: -kv[1])[:n]:
        lines.append(f"{100 * c / total:5.1f} {100 * incl[f] / total:5.1f}  {f}")
    return "\n".join(lines)


def finish_profile(proc: subprocess.Popen[bytes] | None, path: Path) -> None:
    """Wait for a profile started by :func:`start_profile`; print and save its summary."""
    if proc is None:
        return
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if path.exists():
        summary = top_frames(path)
        path.with_suffix(".top.txt").write_text(summary + "\n")
        print(summary)
