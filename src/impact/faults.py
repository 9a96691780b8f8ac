"""Fault injection for the kill-and-resume tests: off unless an environment variable is set.

Every writer of a final output calls :func:`checkpoint` just before it renames its finished
temporary file into place (the moment a crash is most likely to leave debris). With
``IMPACT_FAULT_LOG=<file>`` each final path is appended to that file, so a test can see the
order of writes of a whole run; with ``IMPACT_FAULT_KILL_AT=<n>`` the process kills itself
with SIGKILL at the ``n``-th checkpoint, exactly as an operator's ``kill -9`` or the kernel's
out-of-memory killer would; ``IMPACT_FAULT_KILL_AT=<folder>:<n>`` counts only the writes
with ``<folder>`` among their path's parts (the ``n``-th write into ``twins/``, say, however
many writes an incremental run skipped before it). Neither variable is ever set in normal
operation.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

__all__ = ["KILL_ENV", "LOG_ENV", "checkpoint"]

KILL_ENV = "IMPACT_FAULT_KILL_AT"
LOG_ENV = "IMPACT_FAULT_LOG"
_counts: dict[str, int] = {}


def checkpoint(path: Path | str) -> None:
    """Count a final write of ``path``; log it or die here if the environment says so."""
    log, kill = os.environ.get(LOG_ENV), os.environ.get(KILL_ENV)
    if not log and not kill:
        return
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{path}\n")
    if not kill:
        return
    folder, _, n = kill.rpartition(":")
    if folder and folder not in Path(path).parts:
        return
    _counts[folder] = _counts.get(folder, 0) + 1
    if _counts[folder] == int(n):
        os.kill(os.getpid(), signal.SIGKILL)
