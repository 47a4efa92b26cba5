#!/usr/bin/python3
"""Grade a runtime with the OCI runtime validation suite, side by side with runc.

    scripts/conformance.py                    every host-safe test, mini-runc and runc
    scripts/conformance.py create state       just these tests

The suite (opencontainers/runtime-tools, third_party/) is built once with
Debian's Go and cached. Each test prints TAP; a test passes when it prints
at least one "ok" and no "not ok". One line per test, then the totals.

Left out: the 14 linux_cgroups_* tests. This version of the suite reads
only cgroup v1 files, and on a host that keeps its controllers on v1 they
would write into hierarchies the system uses; stage 3's own tests cover
linux.resources on cgroup v2.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARBALL = REPO / "third_party" / "runtime-tools-0105384.tar.gz"
CACHE = Path(os.environ.get("MINI_ENGINE_SUITE_CACHE", "/var/cache/mini-engine/runtime-tools"))


def build() -> Path:
    """The suite's directory, with runtimetest and one NAME.t per test."""
    digest = hashlib.sha256(TARBALL.read_bytes()).hexdigest()[:16]
    target = CACHE / digest
    if (target / "runtime-tools" / "validation" / "state.t").exists():
        return target / "runtime-tools"
    if shutil.which("go") is None:
        raise SystemExit("conformance: needs Go: scripts/install-system-deps.sh --test installs golang-go")
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=CACHE, prefix=".build-"))
    try:
        # GNU tar, not tarfile: Debian 12's Python 3.11.2 has no extraction
        # filters (PEP 706), and tarfile without one trusts every name. tar
        # refuses members that climb out with ".." or start at "/" by itself.
        subprocess.run(["tar", "-xzf", str(TARBALL), "-C", str(work), "--no-same-owner"], check=True)
        src = work / "runtime-tools"
        env = dict(os.environ, GOFLAGS="-mod=vendor", GOPROXY="off", GOCACHE=str(work / "gocache"),
                   HOME=str(work))
        # runtimetest runs inside the container: it must be static.
        subprocess.run(["go", "build", "-o", "runtimetest", "./cmd/runtimetest"], cwd=src,
                       env=dict(env, CGO_ENABLED="0"), check=True)
        for d in sorted((src / "validation").iterdir()):
            if d.is_dir() and d.name != "util":
                subprocess.run(["go", "build", "-o", f"validation/{d.name}.t", f"./validation/{d.name}"],
                               cwd=src, env=env, check=True)
        shutil.rmtree(work / "gocache", ignore_errors=True)
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target / "runtime-tools"


def host_safe(suite: Path) -> list[str]:
    return sorted(p.stem for p in (suite / "validation").glob("*.t")
                  if not p.stem.startswith("linux_cgroups"))


def wrapper(runtime: str, name: str) -> str:
    """A script that runs ``runtime`` with a state root of its own, for the suite to call."""
    root = f"/run/conformance-{name}"
    path = CACHE / f"{name}.sh"
    path.write_text(f"#!/bin/sh\nexec {runtime} --root {root} \"$@\"\n")
    path.chmod(0o755)
    return str(path)


def cleanup(runtime: str) -> None:
    """What the suite leaves behind: containers, mounts and bundles under /tmp/ocitest*."""
    root = Path(runtime).read_text().split("--root ")[1].split()[0]
    for container_id in os.listdir(root) if os.path.isdir(root) else []:
        subprocess.run([runtime, "delete", "--force", container_id],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if "/tmp/ocitest" in line.split()[4]]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)
    for path in glob.glob("/tmp/ocitest*"):
        shutil.rmtree(path, ignore_errors=True)


def grade(suite: Path, runtime: str, test: str) -> tuple[str, str]:
    """("pass"|"fail"|"timeout", the first failing TAP line)."""
    try:
        done = subprocess.run([f"./validation/{test}.t"], cwd=suite, env=dict(os.environ, RUNTIME=runtime),
                              capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    finally:
        cleanup(runtime)
    lines = done.stdout.splitlines()
    failed = [line for line in lines if line.startswith("not ok")]
    if failed or done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return "fail", (failed[0] if failed else f"exit status {done.returncode}: {last}")
    if not any(line.startswith("ok") for line in lines):
        # Exit 0 and no verdict: some *_fail tests end so when the runtime
        # refused as it should; the hook tests end so without testing anything.
        return "silent", ""
    return "pass", ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tests", nargs="*", help="test names (default: every host-safe one)")
    parser.add_argument("--runtime", default="mini-runc",
                        help="the runtime to grade (default: this checkout's mini-runc)")
    parser.add_argument("--no-runc", action="store_true", help="grade our runtime only")
    args = parser.parse_args()
    suite = build()
    tests = args.tests or host_safe(suite)
    runc = None if args.no_runc else shutil.which("runc")
    runc = runc and wrapper(runc, "runc")
    mine = str(REPO / "bin" / "mini-runc") if args.runtime == "mini-runc" else args.runtime
    ours = wrapper(mine, "mini-runc")
    totals = {"ours": 0, "runc": 0, "both": 0, "silent": 0}
    print(f"{'TEST':<34}{'runc':<9}{'mini-runc':<10}first failure of mini-runc")
    for test in tests:
        theirs = grade(suite, runc, test)[0] if runc else "-"
        verdict, why = grade(suite, ours, test)
        totals["ours"] += verdict == "pass"
        totals["runc"] += theirs == "pass"
        totals["both"] += verdict == "pass" and theirs == "pass"
        totals["silent"] += verdict == "silent"
        print(f"{test:<34}{theirs:<9}{verdict:<10}{why[:90]}", flush=True)
    print(f"\nmini-runc passes {totals['ours']} of {len(tests)}; runc {totals['runc'] if runc else '-'}; "
          f"both {totals['both'] if runc else '-'}; mini-runc silent (exit 0, no verdict) "
          f"{totals['silent']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
