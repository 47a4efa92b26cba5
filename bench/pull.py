"""Pull + unpack, side by side: mini-engine against skopeo copy + umoci unpack.

    .venv/bin/python bench/pull.py [--runs N] [--tree DIR]

A docker-registry on 127.0.0.1 holds one image (umoci builds it from
``--tree``, default /usr/lib/python3.11, gzip-compressed), pushed by skopeo.
Each run starts from an empty store and times:

- ``skopeo copy docker://... oci:DIR`` then ``umoci unpack``: the real tools;
- ``mini-engine pull``: the same blobs fetched, verified and unpacked.

Prints the median of each and the ratio. No assertion: speed is measured
here, never in the tests.
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
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tree", default=f"/usr/lib/python3.{sys.version_info.minor}")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root")
    work = Path(tempfile.mkdtemp(prefix="mini-engine-bench-"))
    registry = None
    try:
        layout = work / "layout"
        build(layout, args.tree, work)
        registry = Registry(work)
        registry.push(f"oci:{layout}:bench", "bench/image:1")
        ref = f"{registry.host}/bench/image:1"
        times: dict[str, list[float]] = {"skopeo + umoci": [], "mini-engine pull": []}
        for n in range(args.runs):
            out = work / f"run{n}"
            out.mkdir()
            tools = timed(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                           f"docker://{ref}", f"oci:{out / 'oci'}:bench"])
            tools += timed(["umoci", "unpack", "--image", f"{out / 'oci'}:bench", str(out / "bundle")])
            times["skopeo + umoci"].append(tools)
            env = dict(os.environ, MINI_ENGINE_ROOT=str(out / "lib"), MINI_ENGINE_RUNROOT=str(out / "run"))
            times["mini-engine pull"].append(
                timed([sys.executable, "-m", "mini_engine", "pull", "-q", ref], env=env))
            shutil.rmtree(out)
        base = statistics.median(times["skopeo + umoci"])
        print(f"image: {args.tree}, from a docker-registry on loopback; {args.runs} runs")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:<18} {median * 1000:8.0f} ms   {median / base:5.2f}x skopeo + umoci")
    finally:
        if registry is not None:
            registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
