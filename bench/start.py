"""Container start, side by side: mini-runc against runc on the same bundle.

    .venv/bin/python bench/start.py [--runs N]

Both runtimes get one bundle (the bundled busybox rootfs, the config that
`mini-engine spec` writes for stage 2, the command `true`) and do what an
engine asks of them for every container: create, start, wait for the
exit, delete. Also timed: `mini-engine run --rm`, the whole engine path.
Prints the median of each and the ratios. No assertion: speed is measured
here, never in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def lifecycle(runtime: list[str], root: str, bundle: str, n: int) -> float:
    """One create, start, wait and delete; seconds."""
    cid = f"bench{n}"
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    t0 = time.perf_counter()
    subprocess.run([*runtime, "--root", root, "create", "--bundle", bundle, cid], check=True, **quiet)
    subprocess.run([*runtime, "--root", root, "start", cid], check=True, **quiet)
    while True:  # the container's `true` has no parent here to tell us it ended
        state = subprocess.run([*runtime, "--root", root, "state", cid], capture_output=True, text=True)
        if json.loads(state.stdout)["status"] == "stopped":
            break
    subprocess.run([*runtime, "--root", root, "delete", cid], check=True, **quiet)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root")
    runc = shutil.which("runc")
    work = Path(tempfile.mkdtemp(prefix="mini-engine-bench-"))
    # No network: runc gets none either (bench/network.py times the bridge).
    env = dict(os.environ, MINI_ENGINE_ROOT=str(work / "lib"), MINI_ENGINE_RUNROOT=str(work / "run"),
               MINI_ENGINE_NETWORK="none")
    try:
        engine = [PY, "-m", "mini_engine"]
        subprocess.run([*engine, "run", "--rm", "busybox", "true"], env=env, check=True)
        bundle = work / "bundle"
        shutil.copytree(work / "lib" / "bundled" / "busybox" / "rootfs", bundle / "rootfs", symlinks=True)
        spec = subprocess.run([*engine, "--stage", "2", "spec", "busybox", "true"], env=env,
                              capture_output=True, text=True, check=True).stdout
        (bundle / "config.json").write_text(spec)
        os.chmod(work, 0o755)

        timings: dict[str, list[float]] = {"mini-runc": [], "runc": [], "mini-engine run --rm": []}
        for n in range(args.runs):
            timings["mini-runc"].append(lifecycle([PY, "-m", "mini_engine.runtime.cli"],
                                                  str(work / "mini-runc"), str(bundle), n))
            if runc:
                timings["runc"].append(lifecycle([runc], str(work / "runc"), str(bundle), n))
            t0 = time.perf_counter()
            subprocess.run([*engine, "run", "--rm", "busybox", "true"], env=env, check=True)
            timings["mini-engine run --rm"].append(time.perf_counter() - t0)

        print(f"create + start + wait + delete of one bundle, median of {args.runs} runs:")
        for name, values in timings.items():
            if values:
                print(f"  {name:<22}{statistics.median(values) * 1000:8.1f} ms")
        if timings["runc"]:
            base = statistics.median(timings["runc"])
            for name in ("mini-runc", "mini-engine run --rm"):
                print(f"  ratio {name} / runc: {statistics.median(timings[name]) / base:.2f}")
        else:
            print("  (runc is not installed: apt-get install runc, for the ratio)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
