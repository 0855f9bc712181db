"""Processes and the machine: process groups, bounded runs, CPU and RSS
from /proc, the snapshot of the built binaries, CPU pinning, and the
machine's description (load, CPU, kernel, commit)."""
import contextlib
import datetime
import os
import platform
import shutil
import signal
import subprocess

import node as node_module  # noqa: E402
from node import BIN  # noqa: E402

from . import REPO

# The two bench binaries; snapshot_binaries() points them at its copies, so
# other modules read them as harness.LOADGEN and harness.SINK at call time.
LOADGEN = os.environ.get("POSTERN_LOADGEN") or os.path.join(BIN, "bench/postern-loadgen")
SINK = os.path.join(BIN, "bench/postern-sink")


class Interrupted(BaseException):
    pass


def on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
    raise Interrupted(f"signal {signum}")


def kill_group(proc, grace=3.0):
    """SIGTERM to the process group, SIGKILL after `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path, n=2000):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pids):
    """User + system CPU seconds of the given processes (all their threads)
    so far; a process that is gone counts 0."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


class NotRun(Exception):
    """A prerequisite is missing; the message says which."""


def need_file(path, what):
    if not os.access(path, os.X_OK):
        raise NotRun(f"{what} not built (bazel-bin/{os.path.relpath(path, node_module.BIN)})")


BINARIES = ["cmd/posternd/posternd", "cmd/postern-worker/postern-worker", "bench/postern-sink",
            "bench/postern-loadgen"]


def snapshot_binaries(workdir):
    """Copies the built binaries into the work dir and runs those: others
    rebuild bazel-bin on this machine, and a binary replaced (or briefly
    missing) in the middle of a run would mix two builds in one table.
    posternd finds postern-worker at ../postern-worker/ beside itself.
    Returns {binary: build time} of what was copied."""
    global LOADGEN, SINK
    dst = os.path.join(workdir, "bin")
    built = {}
    for rel in BINARIES:
        src = LOADGEN if rel.endswith("postern-loadgen") else os.path.join(BIN, rel)
        if not os.access(src, os.X_OK):
            continue
        os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dst, rel))
        built[os.path.basename(rel)] = datetime.datetime.fromtimestamp(
            os.stat(src).st_mtime).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    node_module.BIN = dst
    LOADGEN = os.path.join(dst, "bench/postern-loadgen")
    SINK = os.path.join(dst, "bench/postern-sink")
    return built


def run_bounded(argv, log_path, timeout, stdout_path=None):
    """Runs argv in its own process group, stderr (and stdout unless
    stdout_path) to log_path; kills the group if it outlives timeout."""
    with contextlib.ExitStack() as files:
        log = files.enter_context(open(log_path, "wb"))
        out = files.enter_context(open(stdout_path, "wb")) if stdout_path else log
        proc = subprocess.Popen(argv, stdout=out, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{os.path.basename(argv[0])} ran past {timeout:g}s: "
                               f"{tail(log_path, 800)}") from None
        finally:
            kill_group(proc)


@contextlib.contextmanager
def pinned(cpus):
    """Children started inside run on these CPUs (None: no change)."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def loadavg():
    """The 1-minute load average: others share this machine, and a run
    taken under load says so."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine_line():
    m = machine()
    return f"{m['nproc']} cores, {m['cpu']}, Linux {m['kernel']}, {git_commit()}"


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release()}


def git_commit():
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
