"""Container start, side by side: mini-runc against runc on the same bundle.

    .venv/bin/python bench/start.py [--runs N]

Both runtimes get one bundle (the bundled busybox rootfs, the config that
`mini-engine spec` writes for stage 2, the command `true`) and do what an
engine asks of them for every container: create, start, state (until the
command has ended), delete. Each command is timed on its own, as the
engine's process runs it: mini-runc through bin/mini-runc, the launcher
podman and containerd call. Also timed: `mini-engine run --rm`, the whole
engine path in one process (default stage, no network), against `runc
run` of the same bundle, its whole path in one process. Prints the median
of each and the ratios.
No assertion: speed is measured here, never in the tests.
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
MINI_RUNC = str(REPO / "bin" / "mini-runc")
COMMANDS = ("create", "start", "state", "delete")


def lifecycle(runtime: str, root: str, bundle: str, n: int, timings: dict[str, list[float]]) -> None:
    """One create, start, state until stopped, delete; each command's seconds added to ``timings``."""
    cid = f"bench{n}"
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}

    def timed(command: str, *args: str, **options: object) -> subprocess.CompletedProcess[str]:
        t0 = time.perf_counter()
        done = subprocess.run([runtime, "--root", root, command, *args], text=True, **options)
        timings[command].append(time.perf_counter() - t0)
        return done

    timed("create", "--bundle", bundle, cid, check=True, **quiet)
    timed("start", cid, check=True, **quiet)
    # The container's `true` has no parent here to tell us it ended: ask,
    # as an engine does. Only the first `state` counts (it is nearly always
    # the last: `true` is done before the answer).
    state = timed("state", cid, capture_output=True, check=True)
    while json.loads(state.stdout)["status"] != "stopped":
        state = subprocess.run([runtime, "--root", root, "state", cid], capture_output=True, text=True)
    timed("delete", cid, check=True, **quiet)


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

        runtimes = {"mini-runc": MINI_RUNC, **({"runc": runc} if runc else {})}
        timings = {name: {command: [] for command in COMMANDS} for name in runtimes}
        whole: list[float] = []
        runc_run: list[float] = []
        for n in range(args.runs):  # interleaved, so that both see the same machine
            for name, runtime in runtimes.items():
                lifecycle(runtime, str(work / name), str(bundle), n, timings[name])
            if runc:
                t0 = time.perf_counter()
                subprocess.run([runc, "--root", str(work / "runc"), "run", "--bundle", str(bundle), f"run{n}"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
                runc_run.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run([*engine, "run", "--rm", "busybox", "true"], env=env, check=True)
            whole.append(time.perf_counter() - t0)

        ms = {name: {command: statistics.median(values) * 1000 for command, values in per.items()}
              for name, per in timings.items()}
        print(f"one bundle, each command's median over {args.runs} runs, in ms:")
        print(f"  {'':<12}" + "".join(f"{command:>9}" for command in COMMANDS)
              + f"{'c+s+d':>9}{'all four':>10}")
        for name, per in ms.items():
            print(f"  {name:<12}" + "".join(f"{per[command]:9.1f}" for command in COMMANDS)
                  + f"{per['create'] + per['start'] + per['delete']:9.1f}{sum(per.values()):10.1f}")
        print(f"  mini-engine run --rm (create, start, wait, delete in one process): "
              f"{statistics.median(whole) * 1000:.1f}")
        if "runc" in ms:
            ours, theirs = ms["mini-runc"], ms["runc"]
            three = ("create", "start", "delete")
            print(f"  ratio mini-runc / runc, create + start + delete: "
                  f"{sum(ours[c] for c in three) / sum(theirs[c] for c in three):.2f}")
            print(f"  ratio mini-runc / runc, with state: {sum(ours.values()) / sum(theirs.values()):.2f}")
            print(f"  ratio mini-engine run --rm / runc's four: "
                  f"{statistics.median(whole) * 1000 / sum(theirs.values()):.2f}")
            print(f"  runc run (create, start, wait, delete in one process): "
                  f"{statistics.median(runc_run) * 1000:.1f}")
            print(f"  ratio mini-engine run --rm --network none / runc run: "
                  f"{statistics.median(whole) / statistics.median(runc_run):.2f}x (goal: 1.5x)")
        else:
            print("  (runc is not installed: apt-get install runc, for the ratio)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
