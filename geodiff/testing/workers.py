"""Module-level worker functions for tests of the process pools (spawned workers must import them)."""

from __future__ import annotations

import os
import time


def fake_dock(job: dict) -> dict:
    """Behaves like :func:`geodiff.metrics.docking.dock_one` on a job, or crashes the worker process
    (``job["crash"]``), or hangs (``job["sleep"]`` seconds)."""
    if job.get("crash"):
        os._exit(139)  # what a segfault in a native library looks like to the pool
    time.sleep(float(job.get("sleep", 0)))
    return {"index": job["index"], "name": job["name"], "ok": True, "score": -float(job["index"])}
