"""Networked start, side by side: mini-engine against podman, both with a bridge.

    .venv/bin/python bench/network.py [--runs N]

Both engines run in labkit's Playground (a network namespace that plays
the host, so the machine's own network is not touched), with the same
busybox image (podman loads the engine's own OCI archive of it). Each run
times, from the moment the engine is started:

- *start to network*: until the container's command, ``nc``, reaches a
  listener in the host namespace through the bridge. That is everything a
  container needs before it can serve: image, rootfs, namespaces,
  veth, address, route, NAT; and the command itself running.
- *whole run*: until ``run --rm`` has returned, teardown included.

And mini-engine's ``run --rm busybox true`` on the default bridge against
the same with ``--network none``: what a network adds to a whole run.

podman runs with netavark, its own network stack (``--network-backend``,
scripts/install-system-deps.sh installs it), and runc, on a host whose
cgroup controllers are on v2 (the lab VM): on a cgroup-v1 host podman's
cgroupfs manager would write into the system's hierarchies, and its
column says so instead. No assertion: speed is measured here, never in
the tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mini_engine.labkit import Playground  # noqa: E402
from mini_engine.runtime import cgroups  # noqa: E402

LISTENER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9999))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    print(time.time(), flush=True)
    c.close()
"""
COMMAND = ["sh", "-c", f"echo x | nc -w 2 {Playground.HOST_IP} 9999"]


def timed(lab: Playground, listener: subprocess.Popen[str], argv: list[str],
          env: dict[str, str]) -> tuple[float, float]:
    """(start to network, whole run) of one container, in seconds."""
    t0 = time.time()
    done = subprocess.run(["nsenter", f"--net={lab.ns('host')}", *argv], env=env, capture_output=True,
                          text=True, timeout=120)
    whole = time.time() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    arrived = float(listener.stdout.readline())  # type: ignore[union-attr]
    return arrived - t0, whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root")
    # /run: a tmpfs, where the overlays can go even when / and /tmp are overlays (the test VM).
    work = Path(tempfile.mkdtemp(prefix="mini-engine-bench-net-", dir="/run"))
    env = dict(os.environ, MINI_ENGINE_ROOT=str(work / "lib"), MINI_ENGINE_RUNROOT=str(work / "run"))
    env.pop("MINI_ENGINE_NETWORK", None)
    engine = [sys.executable, "-m", "mini_engine"]
    # Each engine gets a host namespace of its own: podman's default network
    # is 10.88.0.0/16 too, and its bridge stays after its containers.
    labs: dict[str, tuple[Playground, subprocess.Popen[str]]] = {}
    try:
        # The first run imports the bundled busybox into the store; then it can be saved.
        subprocess.run([*engine, "run", "--rm", "--network", "none", "busybox", "true"], env=env, check=True)
        subprocess.run([*engine, "save", "-o", str(work / "busybox.tar"), "busybox"], env=env, check=True,
                       capture_output=True)
        contenders = {"mini-engine": [*engine, "run", "--rm", "--network", "bridge", "busybox", *COMMAND]}
        podman = shutil.which("podman")
        why_not = "podman is not installed" if podman is None else ""
        if podman and not cgroups.on_v2("memory", "pids"):
            # cgroupfs with the controllers on v1 would make podman's cgroups there, in
            # hierarchies the system owns: only on a cgroup-v2 host (the test VM, the lab VM).
            podman, why_not = None, "not run: its cgroups would go into this host's cgroup v1 hierarchies"
        if podman:
            base = [podman, "--root", str(work / "podman"), "--runroot", str(work / "podman-run"),
                    "--cgroup-manager", "cgroupfs", "--storage-driver", "vfs", "--events-backend", "none",
                    "--network-backend", "netavark", "--runtime", "runc"]
            subprocess.run([*base, "load", "-q", "-i", str(work / "busybox.tar")], check=True,
                           capture_output=True)
            # Lower rlimits than podman's defaults: raising them takes CAP_SYS_RESOURCE,
            # which sandboxes (this one) take away even from root. mini-engine sets none.
            contenders["podman"] = [*base, "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit",
                                    "nproc=1024:1024", "--network", "bridge", "localhost/busybox:latest",
                                    *COMMAND]
        for name in contenders:
            lab = Playground(env)
            listener = subprocess.Popen(["nsenter", f"--net={lab.ns('host')}", sys.executable, "-c",
                                         LISTENER], stdout=subprocess.PIPE, text=True)
            labs[name] = (lab, listener)
            assert listener.stdout is not None and listener.stdout.readline() == "ready\n"
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
        for name, argv in contenders.items():
            try:
                timed(*labs[name], argv, env)  # warm: caches, the bridge's first setup
            except RuntimeError as exc:
                why_not = f"{name} cannot run here: {exc}"
                timings.pop(name)
        plain = {mode: [*engine, "run", "--rm", "--network", mode, "busybox", "true"]
                 for mode in ("bridge", "none")}
        plain_times: dict[str, list[float]] = {mode: [] for mode in plain}
        host = ["nsenter", f"--net={labs['mini-engine'][0].ns('host')}"]
        for _ in range(args.runs):
            for name in timings:
                timings[name].append(timed(*labs[name], contenders[name], env))
            for mode, argv in plain.items():
                t0 = time.perf_counter()
                subprocess.run([*host, *argv], env=env, check=True, capture_output=True)
                plain_times[mode].append(time.perf_counter() - t0)

        print(f"networked start (--network bridge, busybox), median of {args.runs} runs:")
        medians = {}
        for name, values in timings.items():
            first = statistics.median(v[0] for v in values)
            whole = statistics.median(v[1] for v in values)
            medians[name] = (first, whole)
            print(f"  {name:<12} start to network {first * 1000:7.1f} ms    whole run {whole * 1000:7.1f} ms")
        bridge, none = (statistics.median(plain_times[mode]) for mode in ("bridge", "none"))
        print(f"  mini-engine run --rm busybox true: bridge {bridge * 1000:.1f} ms, --network none "
              f"{none * 1000:.1f} ms; ratio bridge / none {bridge / none:.2f}x (goal: 2x)")
        if "podman" in medians:
            mine, theirs = medians["mini-engine"], medians["podman"]
            print(f"  ratio mini-engine / podman: start to network {mine[0] / theirs[0]:.2f}x, "
                  f"whole run {mine[1] / theirs[1]:.2f}x (goal: 0.5x)")
        else:
            print(f"  podman: {why_not}")
    finally:
        for lab, listener in labs.values():
            listener.kill()
            listener.wait()
            lab.close()
        subprocess.run(["umount", "-R", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
