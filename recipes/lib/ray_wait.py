"""Wait until a Ray cluster has the nodes and GPUs a launch needs; fail clearly if it never does.

Used by run scripts and generated sbatch scripts instead of fixed sleeps. Exit 0 when ready,
1 on timeout (naming what never joined).
"""

import argparse
import os
import sys
import threading
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--address", required=True, help="GCS address host:port")
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--gpus", type=float, required=True)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--expect-hosts", default="",
                   help="comma-separated node IPs or host names, or NAME=IP pairs (Slurm node name = address)")
    p.add_argument("--watch-pid", type=int, default=0,
                   help="the local `ray start` process: fail at once if it exits before the cluster is ready")
    a = p.parse_args()

    if a.watch_pid:
        def watch() -> None:  # a head that died (port taken, socket path too long) will never be ready
            while True:
                try:
                    os.kill(a.watch_pid, 0)
                except ProcessLookupError:
                    print(f"ray not ready: the ray start process {a.watch_pid} exited before the cluster at "
                          f"{a.address} was up (see its output above)", file=sys.stderr, flush=True)
                    os._exit(1)
                except PermissionError:
                    pass
                time.sleep(0.5)

        threading.Thread(target=watch, daemon=True).start()

    # ray.init can block far past the deadline (a GCS that accepts connections but never answers);
    # a watchdog keeps the wait bounded whatever Ray does.
    def give_up() -> None:
        print(f"ray not ready after {a.timeout:g} s at {a.address}: no answer from the cluster "
              "(connecting to it did not return)", file=sys.stderr, flush=True)
        os._exit(1)

    watchdog = threading.Timer(a.timeout + 15, give_up)
    watchdog.daemon = True
    watchdog.start()

    import ray  # only here: this script runs where Ray is installed

    started = time.monotonic()
    deadline = started + a.timeout
    connected = False
    nodes, gpus = [], 0.0
    while time.monotonic() < deadline:
        try:
            if not connected:
                ray.init(address=a.address, logging_level="ERROR", log_to_driver=False,
                         configure_logging=False)
                connected = True
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            gpus = sum(n.get("Resources", {}).get("GPU", 0.0) for n in nodes)
            if len(nodes) >= a.nodes and gpus >= a.gpus:
                print(f"ray ready: {len(nodes)} node(s), {gpus:g} GPU(s) at {a.address} "
                      f"after {time.monotonic() - started:.1f} s", flush=True)
                return 0
        except Exception:  # noqa: BLE001 - the head may not be up yet; keep polling until the deadline
            connected = False
        time.sleep(1.0)

    seen = sorted({n.get("NodeManagerAddress", "?") for n in nodes} | {n.get("NodeManagerHostname", "?")
                                                                      for n in nodes})
    missing = []
    for entry in filter(None, a.expect_hosts.split(",")):
        name, _, addr = entry.partition("=")
        if (addr or name) not in seen and name not in seen:
            missing.append(f"{name} ({addr})" if addr else name)
    what = f"; never joined: {', '.join(missing)}" if missing else ""
    print(f"ray not ready after {a.timeout:g} s at {a.address}: {len(nodes)}/{a.nodes} node(s), "
          f"{gpus:g}/{a.gpus:g} GPU(s){what}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
