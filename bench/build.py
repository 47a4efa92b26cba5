"""Image builds, side by side: ``mini-engine build`` against ``buildah bud``, cold and cached.

    .venv/bin/python bench/build.py [--runs N] [--dir DIR]

One Containerfile of two stages, the shape of an everyday build: a RUN
that writes a few hundred files, a COPY of a source tree from the context
(the Python standard library's ``json`` and ``email`` packages), a RUN
that deletes some of them (whiteouts), and a second stage that copies the
result. Both tools start from the same base image: the bundled busybox,
built once by mini-engine and handed to buildah as an OCI archive.

- cold: every step built (``--no-cache``; buildah ``--layers --no-cache``);
- cached: the same build again, every step from the cache (buildah ``--layers``).

buildah runs with its overlay storage driver and RUN in a chroot (this
host keeps its cgroup controllers on v1, where buildah's runc would write
the system's hierarchies); mini-engine with its own runtime and no
network. Runs alternate, pair by pair; the medians and the ratios are
printed. No assertion: speed is measured here, never in the tests.
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

CONTAINERFILE = """\
FROM localhost/base AS build
RUN mkdir -p /data && for i in $(seq 1 300); do echo "line $i" > /data/file-$i; done
COPY src/ /src/
RUN rm -rf /src/email/mime /data/file-1* && ln /data/file-2 /data/again
FROM localhost/base
COPY --from=build /src/ /app/src/
COPY --from=build /data/ /app/data/
WORKDIR /app
CMD ["ls", "/app"]
"""


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", help="where the stores go (default: the temp directory)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (both build with real containers)")
    if shutil.which("buildah") is None:
        raise SystemExit("bench: buildah is not installed (scripts/setup.sh --test)")
    work = Path(tempfile.mkdtemp(prefix="mini-engine-bench-build-", dir=args.dir))
    os.chmod(work, 0o755)
    env = dict(os.environ, MINI_ENGINE_ROOT=str(work / "lib"), MINI_ENGINE_RUNROOT=str(work / "run"),
               MINI_ENGINE_NETWORK="none")
    engine = [sys.executable, "-m", "mini_engine"]
    buildah = ["buildah", "--root", str(work / "buildah"), "--runroot", str(work / "buildah-run"),
               "--storage-driver", "overlay"]
    try:
        base = work / "base"
        base.mkdir()
        (base / "Containerfile").write_text("FROM busybox\nLABEL bench=base\n")
        timed([*engine, "build", "-q", "-t", "localhost/base", str(base)], env)
        timed([*engine, "save", "-o", str(work / "base.tar"), "localhost/base"], env)
        image = subprocess.run([*buildah, "pull", "-q", f"oci-archive:{work / 'base.tar'}"], env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
        timed([*buildah, "tag", image, "localhost/base"], env)

        context = work / "context"
        context.mkdir()
        (context / "Containerfile").write_text(CONTAINERFILE)
        library = Path(os.__file__).parent
        for package in ("json", "email"):
            shutil.copytree(library / package, context / "src" / package,
                            ignore=shutil.ignore_patterns("__pycache__"))
        files = sum(len(f) for _, _, f in os.walk(context / "src"))

        ours = {"cold": [*engine, "build", "-q", "--no-cache", "-t", "bench/ours", str(context)],
                "cached": [*engine, "build", "-q", "-t", "bench/ours", str(context)]}
        theirs = {"cold": [*buildah, "bud", "-q", "--isolation", "chroot", "--layers", "--no-cache",
                           "-t", "bench/theirs", str(context)],
                  "cached": [*buildah, "bud", "-q", "--isolation", "chroot", "--layers",
                             "-t", "bench/theirs", str(context)]}
        times: dict[str, dict[str, list[float]]] = {k: {"mini-engine": [], "buildah": []} for k in ours}
        for _ in range(args.runs):
            for kind in ("cold", "cached"):
                times[kind]["buildah"].append(timed(theirs[kind], env))
                times[kind]["mini-engine"].append(timed(ours[kind], env))
        print(f"a build of 2 stages, 9 steps, {files} files copied from the context; {args.runs} runs each")
        for kind, pair in times.items():
            base_time = statistics.median(pair["buildah"])
            for name, values in pair.items():
                median = statistics.median(values)
                print(f"{kind:<7} {name:<12} {median * 1000:8.0f} ms   {median / base_time:5.2f}x buildah")
    finally:
        subprocess.run([*buildah, "rmi", "--all", "--force"], capture_output=True)
        subprocess.run(["umount", "-R", str(work / "buildah" / "overlay")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
