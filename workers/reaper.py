"""Watchdog for a local Ray that `qa run` started: stops what the driver could not.

The driver writes "PID START_TIME" lines on this process's stdin for every process it
starts (Ray's head processes, the raylet and the agents it spawns). When stdin ends, the
driver is gone: normally after `ray.shutdown()`, and then nothing is left to do; if it was
killed (SIGKILL, the OOM killer), Ray's dashboard and runtime-env agents would outlive it
(~200 MB), so every listed process still running with the same start time (not a reused
pid) gets SIGTERM, then SIGKILL after a grace period.

Run as a script by `workers.runner`; it imports nothing of the project, only psutil.
"""

from __future__ import annotations

import contextlib
import sys

import psutil

GRACE_SECONDS = 5.0


def main() -> None:
    listed: dict[int, float] = {}
    for line in sys.stdin:
        try:
            pid, started = line.split()
            listed[int(pid)] = float(started)
        except ValueError:
            continue
    survivors = []
    for pid, started in listed.items():
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) < 0.01:
                proc.terminate()
                survivors.append(proc)
        except psutil.Error:
            continue  # already gone
    _, alive = psutil.wait_procs(survivors, timeout=GRACE_SECONDS)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


if __name__ == "__main__":
    main()
