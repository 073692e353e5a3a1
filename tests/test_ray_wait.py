"""ray_wait.py: readiness is bounded, and a head that died is reported at once, not after the timeout."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from conftest import ROOT, importorskip

WAIT = ROOT / "recipes" / "lib" / "ray_wait.py"
importorskip("ray")


def test_dead_head_fails_fast():
    head = subprocess.Popen(["sleep", "1"])
    threading.Thread(target=head.wait, daemon=True).start()  # reap it, as bash reaps its ray start
    t = time.monotonic()
    p = subprocess.run([sys.executable, str(WAIT), "--address", "127.0.0.1:9", "--nodes", "1", "--gpus", "0",
                        "--timeout", "120", "--watch-pid", str(head.pid)], capture_output=True, text=True,
                       timeout=150)
    assert p.returncode == 1
    assert f"the ray start process {head.pid} exited" in p.stderr
    assert time.monotonic() - t < 60, "must not wait for the 120 s timeout"


def test_timeout_is_bounded():
    p = subprocess.run([sys.executable, str(WAIT), "--address", "127.0.0.1:9", "--nodes", "2", "--gpus", "0",
                        "--timeout", "3", "--expect-hosts", "n1=127.0.0.1,n2=127.0.0.2"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1
    assert "ray not ready after 3 s at 127.0.0.1:9" in p.stderr
