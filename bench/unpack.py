"""Layer unpack, side by side: our unpacker against ``umoci unpack`` on one image.

    .venv/bin/python bench/unpack.py [--runs N] [--tree DIR] [--dir DIR]

umoci builds an image from ``--tree`` (default /usr/lib/python3.11: thousands
of small files, the shape of a real base layer) into an OCI layout, gzip
compressed. Then, from that layout, each tool unpacks every layer:

- ``umoci unpack``: checks digests, unpacks the layers into one rootfs;
- ours: ``mini_engine.images.layer.unpack`` per layer, as ``load`` does after the
  blobs are in the store (digest of the uncompressed stream checked too).

Prints the median of each and the ratio. No assertion: speed is measured
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
sys.path.insert(0, str(REPO))

from mini_engine.images import layer  # noqa: E402


def build(layout: Path, tree: str, work: Path) -> None:
    subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:bench"], check=True)
    bundle = work / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:bench", str(bundle)], check=True,
                   capture_output=True)
    shutil.copytree(tree, bundle / "rootfs" / tree.lstrip("/"), symlinks=True)
    subprocess.run(["umoci", "repack", "--image", f"{layout}:bench", str(bundle)], check=True)
    shutil.rmtree(bundle)


def layers(layout: Path) -> list[tuple[str, str, str]]:
    """(blob path, media type, diff_id) of each layer of the layout's one image."""
    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.split(":")[1]

    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
    config = json.loads(blob(manifest["config"]["digest"]).read_text())
    return [(str(blob(d["digest"])), d["mediaType"], diff_id)
            for d, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True)]


def ours(layout: Path, out: Path) -> float:
    t0 = time.perf_counter()
    for i, (blob, media_type, diff_id) in enumerate(layers(layout)):
        layer.unpack(blob, media_type, diff_id, str(out / str(i)))
    return time.perf_counter() - t0


def umoci(layout: Path, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:bench", str(out)], check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tree", default=f"/usr/lib/python3.{sys.version_info.minor}")
    parser.add_argument("--dir", help="where the stores and bundles go (default: the temp directory); "
                        "a directory that a file watcher sees makes every file creation slow")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (both keep file owners)")
    work = Path(tempfile.mkdtemp(prefix="mini-engine-bench-", dir=args.dir))
    try:
        layout = work / "layout"
        build(layout, args.tree, work)
        size = sum(os.path.getsize(b) for b, _, _ in layers(layout))
        files = sum(len(f) + len(d) for _, d, f in os.walk(args.tree))
        times: dict[str, list[float]] = {"umoci unpack": [], "mini-engine": []}
        for n in range(args.runs):
            for name, tool in (("umoci unpack", umoci), ("mini-engine", ours)):
                out = work / f"out-{n}-{name.split()[0]}"
                if tool is ours:
                    out.mkdir()
                times[name].append(tool(layout, out))
                shutil.rmtree(out)
        base = statistics.median(times["umoci unpack"])
        print(f"image: {args.tree}, {files} entries, {size / 1e6:.1f} MB compressed; {args.runs} runs")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:<14} {median * 1000:8.0f} ms   {median / base:5.2f}x umoci")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
