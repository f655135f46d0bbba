"""What every benchmark does before it builds anything: make sure it runs as root, find the
PostgreSQL major it deploys (the newest the machine supports, as the tests do), and let
SIGTERM and SIGHUP clean up as Ctrl-C does (also where SIGINT was inherited ignored)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def start(creates: str, interruptible: bool = True) -> int | None:
    """The PostgreSQL major to deploy; None, after one line on stderr, when not run as root.
    ``creates``: what the benchmark makes, for that line."""
    if os.geteuid() != 0:
        print(f"run as root: it creates {creates}", file=sys.stderr)
        return None
    version = int(subprocess.run(["/usr/share/postgresql-common/supported-versions"], text=True,
                                 capture_output=True, check=True).stdout.split()[-1])
    if interruptible:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _interrupt)
    return version
