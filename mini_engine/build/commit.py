"""``mini-engine commit``: a container's changes, as a new image.

Chapter 09 reads this module. What a build does after each RUN, by hand:
the container's upper directory (chapter 04) becomes one more layer on
top of its image's, and the image's config gets one more line of history.
docker commit and podman commit do the same.
"""

from __future__ import annotations

import os

from mini_engine.base.errors import ContainerError
from mini_engine.build.builder import commit_image, epoch, store_layer, timestamp
from mini_engine.containers import record as containers
from mini_engine.images.store import Store, parse_json
from mini_engine.paths import Paths


# [book:commit-container]
def commit(paths: Paths, name: str, tags: list[str], message: str | None = None) -> str:
    """The container ``name``'s changes as a layer on its image; return the new image's id."""
    container = containers.load(paths, name)
    record = container.record
    if record.image_id is None or record.lowers is None:
        raise ContainerError(f'container "{name}" was not made from an image in the store '
                             "(--rootfs, or a stage before 5): nothing to commit it onto")
    if containers.status(paths, container)[0] == "running":
        raise ContainerError(f'container "{name}" is running: stop it first (mini-engine stop), '
                             "so that its upper directory holds still while it is read")
    if record.id_map:
        raise ContainerError(f'container "{name}" ran with --userns auto: its files belong to '
                             "its uid range, not to the image's users; commit refuses it")
    store = Store(paths.root)
    image = store.image(record.image_id)
    config = parse_json(store.read_blob(record.image_id), "image config")
    seconds = epoch()
    layer = store_layer(store, os.path.join(container.bundle, "upper"), seconds)
    layers = [dict(entry) for entry in image["Layers"]] + ([layer] if layer else [])
    config["created"] = timestamp(seconds)
    config["rootfs"] = {"type": "layers", "diff_ids": [entry["diffID"] for entry in layers]}
    entry = {"created": config["created"], "created_by": f"mini-engine commit {container.id[:12]}"}
    if message:
        entry["comment"] = message
    if not layer:
        entry["empty_layer"] = True
    config["history"] = [*config.get("history", []), entry]
    return commit_image(store, config, layers, tags, say=lambda text: None)
# [/book:commit-container]
