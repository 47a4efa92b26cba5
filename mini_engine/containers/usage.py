"""``system df`` and ``system prune``: the disk the engine uses, and giving back what nothing uses.

Chapter 08 mentions this module ("Docker's habits"). Man pages: stat(2)
(``st_size``, ``st_nlink``, ``st_dev``), du(1).

``system df`` counts what ``docker system df`` counts, each in docker's
sense: an image is *active* while a container (running or not) is made from
it, and its layers are reclaimable when no active image shares them; a
container is active while it runs, and what it wrote (its overlay's upper
directory, or below stage 4 its copy of the root filesystem) is reclaimable
once it has exited; a volume is active while a container names it. Sizes
are the files' own sizes, each file counted once however many hard links
it has, and no mount crossed, as ``du --apparent-size -x`` counts.

``system prune`` is the prunes one after the other, as docker's: stopped
containers, then networks no container uses, then images without a name
(``-a``: every image no container uses), then, with ``--volumes``, volumes
no container uses; it asks first, unless ``-f``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from typing import Any

from mini_engine.containers import record as containers
from mini_engine.containers import volumes
from mini_engine.images.store import Store
from mini_engine.paths import Paths


def tree_size(path: str) -> int:
    """The bytes of the files under ``path``: each inode once, no mount point crossed."""
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return 0
    seen: set[int] = set()
    total = 0
    for directory, subdirs, names in os.walk(path):
        # Not into a mount point: what is mounted there is someone else's (a volume, a layer).
        subdirs[:] = [d for d in subdirs if os.lstat(os.path.join(directory, d)).st_dev == top.st_dev]
        for name in names:
            try:
                st = os.lstat(os.path.join(directory, name))
            except FileNotFoundError:
                continue
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total


def human(size: float) -> str:
    """docker's sizes (go-units' HumanSize): decimal units, four significant digits."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.4g}{units[i]}"


@dataclass
class Row:
    """One line of ``system df``, with docker's field names for ``--format``."""

    type: str
    total: int
    active: int
    size: int
    reclaimable: int

    def fields(self) -> dict[str, Any]:
        share = f" ({100 * self.reclaimable // self.size}%)" if self.size else ""
        return {"Type": self.type, "TotalCount": self.total, "Active": self.active, "Size": human(self.size),
                "Reclaimable": f"{human(self.reclaimable)}{share}"}


HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
           "Reclaimable": "RECLAIMABLE"}


# [book:df]
def df(paths: Paths) -> list[Row]:
    """The engine's images, containers and volumes: how many, how many in use, and their bytes."""
    store = Store(paths.root)
    images = store.images()
    used = containers.images_in_use(paths, store.repositories())
    layers_of = {image["Id"]: {layer["diffID"] for layer in image["Layers"]} for image in images}
    every_layer = set().union(*layers_of.values()) if layers_of else set()
    active_layers = set().union(*(layers_of[i] for i in layers_of if i in used)) if used else set()
    sizes = {diff_id: store.layer_size(diff_id) for diff_id in every_layer}
    image_row = Row("Images", len(images), sum(1 for i in layers_of if i in used), sum(sizes.values()),
                    sum(size for diff_id, size in sizes.items() if diff_id not in active_layers))
    running = total = written = idle = 0
    for container in containers.all_containers(paths):
        total += 1
        own = "upper" if container.record.lowers is not None else "rootfs"
        size = tree_size(os.path.join(container.bundle, own))
        written += size
        if containers.status(paths, container)[0] == "running":
            running += 1
        else:
            idle += size
    container_row = Row("Containers", total, running, written, idle)
    names = volumes.all_volumes(paths)
    volume_sizes = {name: tree_size(os.path.join(volumes.volume_dir(paths, name), "_data")) for name in names}
    in_use = [name for name in names if volumes.users(paths, name)]
    volume_row = Row("Local Volumes", len(names), len(in_use), sum(volume_sizes.values()),
                     sum(size for name, size in volume_sizes.items() if name not in in_use))
    return [image_row, container_row, volume_row]
# [/book:df]


def print_df(rows: list[Row]) -> None:
    print(f"{'TYPE':<16}{'TOTAL':<10}{'ACTIVE':<10}{'SIZE':<11}RECLAIMABLE")
    for row in rows:
        f = row.fields()
        print(f"{f['Type']:<16}{f['TotalCount']:<10}{f['Active']:<10}{f['Size']:<11}{f['Reclaimable']}")


WARNING = """WARNING! This will remove:
  - all stopped containers
  - all networks not used by at least one container
{images}{volumes}
Are you sure you want to continue? [y/N] """


# [book:system-prune]
def prune(paths: Paths, all_images: bool, with_volumes: bool, force: bool) -> int:
    """``system prune``: each prune in turn, what it removed under docker's headings, and
    the space given back (``system df``'s sizes before and after)."""
    if not force:
        images = "  - all images without at least one container associated to them\n" if all_images \
            else "  - all dangling images\n"
        sys.stdout.write(WARNING.format(images=images, volumes="  - all anonymous and named volumes not used "
                                        "by at least one container\n" if with_volumes else ""))
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0  # docker's answer to anything but yes: nothing done, and no error
    from mini_engine.containers import manage
    from mini_engine.images import commands as images_commands
    from mini_engine.network import networks

    before = sum(row.size for row in df(paths))
    sections = [("Deleted Containers", _printed(lambda: manage.prune(paths)))]
    sections.append(("Deleted Networks", networks.prune(paths)))

    def users(store: Store) -> dict[str, list[str]]:
        return containers.images_in_use(paths, store.repositories())

    with contextlib.redirect_stderr(io.StringIO()):  # its count of layers and blobs: the total says it
        deleted = _printed(lambda: images_commands.prune(paths, all_images, users))
    sections.append(("Deleted Images", [line.removeprefix("Deleted: ") for line in deleted]))
    if with_volumes:
        sections.append(("Deleted Volumes", volumes.prune(paths)))
    for heading, lines in sections:
        if lines:
            print(f"{heading}:")
            print("\n".join(lines))
            print()
    print(f"Total reclaimed space: {human(max(0, before - sum(row.size for row in df(paths))))}")
    return 0
# [/book:system-prune]


def _printed(action: Any) -> list[str]:
    """What ``action`` prints, a line each: the prune commands print what they remove."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        action()
    return out.getvalue().splitlines()
