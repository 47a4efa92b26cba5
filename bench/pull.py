"""Pull + unpack, side by side: mini-engine against skopeo copy + umoci unpack.

    .venv/bin/python bench/pull.py [--runs N] [--tree DIR] [--dir DIR]

A docker-registry on 127.0.0.1 holds one image (umoci builds it from
``--tree``, default /usr/lib/python3.11, gzip-compressed), pushed by skopeo.
Each run starts from an empty store and times:

- ``skopeo copy docker://... oci:DIR`` then ``umoci unpack``: the real tools;
- ``mini-engine pull``: the same blobs fetched, verified and unpacked.

After a warm-up run of each, the two run in turn, each first every other
run, each after a sync(2), and the ratio is taken pair by pair (a shared
machine's speed drifts): printed are the median of each and the median of
the ratios. No assertion: speed is measured here, never in the tests.
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
sys.path.insert(0, str(REPO / "tests"))

from fixtures.registry import Registry  # noqa: E402

from bench.unpack import build  # noqa: E402


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    # Each starts with no dirty pages of the one before it to write back.
    os.sync()
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def tools(ref: str, out: Path) -> float:
    return (timed(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                   f"docker://{ref}", f"oci:{out / 'oci'}:bench"])
            + timed(["umoci", "unpack", "--image", f"{out / 'oci'}:bench", str(out / "bundle")]))


def ours(ref: str, out: Path) -> float:
    env = dict(os.environ, MINI_ENGINE_ROOT=str(out / "lib"), MINI_ENGINE_RUNROOT=str(out / "run"))
    return timed([sys.executable, "-m", "mini_engine", "pull", "-q", ref], env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tree", default=f"/usr/lib/python3.{sys.version_info.minor}")
    parser.add_argument("--dir", help="where the stores and bundles go (default: the temp directory); "
                        "a directory that a file watcher sees makes every file creation slow")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root")
    work = Path(tempfile.mkdtemp(prefix="mini-engine-bench-", dir=args.dir))
    registry = None
    try:
        layout = work / "layout"
        build(layout, args.tree, work)
        registry = Registry(work)
        registry.push(f"oci:{layout}:bench", "bench/image:1")
        ref = f"{registry.host}/bench/image:1"
        times: dict[str, list[float]] = {"skopeo + umoci": [], "mini-engine pull": []}
        for n in range(-1, args.runs):  # run -1 warms up (page cache, the file system's tables)
            out = work / f"run{n}"
            out.mkdir()

            # In turn, and each first every other run: neither always follows the other.
            for name, run in (("skopeo + umoci", tools), ("mini-engine pull", ours))[::1 if n % 2 else -1]:
                took = run(ref, out)
                if n >= 0:
                    times[name].append(took)
            # Kept to the end: freeing blocks on this mount (discard) stalls
            # the file creations of whatever runs next.
        pairs = zip(times["mini-engine pull"], times["skopeo + umoci"], strict=True)
        ratios = [ours / tools for ours, tools in pairs]
        print(f"image: {args.tree}, from a docker-registry on loopback; {args.runs} runs")
        for name, values in times.items():
            print(f"{name:<18} {statistics.median(values) * 1000:8.0f} ms")
        print(f"mini-engine pull / (skopeo copy + umoci unpack): {statistics.median(ratios):.2f}x "
              f"(median of the pairs; from {min(ratios):.2f}x to {max(ratios):.2f}x)")
    finally:
        if registry is not None:
            registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
