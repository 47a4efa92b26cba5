"""The image commands: load, save, images, inspect, rmi, image prune; tag and history.

Chapter 05 reads this module (chapter 09, ``tag`` and ``history``). Each works on the store (``store.py``) under
its lock; none needs the runtime.
"""

from __future__ import annotations

import datetime
import json
import re
import sys
from collections.abc import Callable
from typing import Any

from mini_engine.base.errors import ContainerError
from mini_engine.images.store import Store
from mini_engine.paths import Paths


def load(paths: Paths, path: str | None, quiet: bool) -> int:
    """``load -i FILE``, or from stdin (``load < x.tar``, ``-i -``), as docker's."""
    from mini_engine.images import archive  # imported by the commands that need it: pull is faster without

    store = Store(paths.root)
    if path in (None, "-"):
        loaded = _load_stdin(paths, store)
    else:
        loaded = archive.load(store, path)
    for image_id, tags in loaded:
        if quiet:
            continue
        for tag in tags:
            print(f"Loaded image: {tag}")
        if not tags:
            print(f"Loaded image ID: {image_id}")
    return 0


def _load_stdin(paths: Paths, store: Store) -> list[tuple[str, list[str]]]:
    """An archive from stdin: a pipe cannot be read twice, and a tar is read by its
    members, so it is copied to a file of the store's first, removed once loaded."""
    import shutil
    import tempfile

    from mini_engine.images import archive

    if sys.stdin.isatty():  # docker's words for it
        raise ContainerError("requested load from stdin, but stdin is empty: load < FILE, or -i FILE")
    paths.secure()
    with tempfile.NamedTemporaryFile(dir=paths.root, prefix=".load-") as copy:
        shutil.copyfileobj(sys.stdin.buffer, copy)
        copy.flush()
        if copy.tell() == 0:
            raise ContainerError("requested load from stdin, but stdin is empty: load < FILE, or -i FILE")
        try:
            return archive.load(store, copy.name)
        except ContainerError as exc:
            # The archive is the user's stdin, not our copy of it.
            raise ContainerError(str(exc).replace(copy.name, "stdin"), exc.exit_code) from None


def ask_credentials(username: str | None, password: str | None, password_stdin: bool) -> tuple[str, str]:
    """``login``'s user and password: from the flags, stdin (``--password-stdin``), or
    asked for on the terminal, the password unechoed, as docker asks."""
    if password_stdin:
        if username is None:
            raise ContainerError("--password-stdin needs --username (-u)")
        return username, sys.stdin.read().rstrip("\n")
    if username is not None and password is not None:
        return username, password
    if not sys.stdin.isatty():
        raise ContainerError("login: no terminal to ask on: give -u USER and --password-stdin (or -p)")
    if username is None:
        sys.stdout.write("Username: ")  # not input(): on a terminal it prompts on stderr
        sys.stdout.flush()
        username = sys.stdin.readline().strip()
        if not username:
            raise ContainerError("login: a user name is needed")
    if password is None:
        password = _read_unechoed("Password: ")
    return username, password


def _read_unechoed(prompt: str) -> str:
    """A line from the terminal on stdin with its echo off (termios(3): ECHO), restored after."""
    import termios

    fd = sys.stdin.fileno()
    before = termios.tcgetattr(fd)
    quiet = list(before)
    quiet[3] &= ~termios.ECHO  # lflags
    # Echo off before the prompt, so that nothing typed after it is shown; TCSANOW, not
    # TCSAFLUSH, so that what was typed ahead is kept, not thrown away.
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = sys.stdin.readline()
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, before)
        sys.stdout.write("\n")  # the newline the user typed was not echoed
    return line.rstrip("\n")


def pull(paths: Paths, name: str, platform: str | None, insecure: bool, quiet: bool) -> int:
    from mini_engine.images import registry

    record = registry.pull(Store(paths.root), name, platform, insecure, quiet)
    if not quiet:
        print(f"{name}: pulled {record['Id']}")
    else:
        print(record["Id"])
    return 0


def push(paths: Paths, name: str, dest: str | None, insecure: bool, quiet: bool) -> int:
    from mini_engine.images import push as upload

    upload.push(Store(paths.root), name, dest, insecure, say=(lambda line: None) if quiet else print)
    return 0


def login(paths: Paths, registry_name: str, username: str, password: str, insecure: bool) -> int:
    from mini_engine.images import registry

    registry.login(paths.root, registry_name, username, password, insecure)
    print("Login Succeeded")
    return 0


def logout(paths: Paths, registry_name: str) -> int:
    from mini_engine.images import registry

    if not registry.update_auths(paths.root, registry_name, None):
        raise ContainerError(f"not logged in to {registry_name}")
    print(f"Removed login credentials for {registry_name}")
    return 0


def save(paths: Paths, names: list[str], output: str | None, fmt: str = "oci-archive") -> int:
    from mini_engine.images import archive

    store = Store(paths.root)
    if output:
        archive.save_to_file(store, names, output, fmt)
        return 0
    if sys.stdout.isatty():
        raise ContainerError("refusing to write an archive to a terminal: use -o FILE or redirect")
    archive.FORMATS[fmt](store, names, sys.stdout.buffer)
    return 0


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    raise AssertionError


def _rows(record: dict[str, Any], references: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    """(repository, tag, manifest digest) per line of ``images``: a line per tag, one
    per digest no tag of its repository points at, and ``<none>`` for an image with no name."""
    rows, tagged = [], set()
    for name, ref in sorted(references.items()):
        if ref["Id"] == record["Id"] and "@" not in name:
            repo, _, tag = name.rpartition(":")
            rows.append((repo, tag, ref["Manifest"]))
            tagged.add((repo, ref["Manifest"]))
    for name, ref in sorted(references.items()):
        if ref["Id"] == record["Id"] and "@" in name:
            repo = name.partition("@")[0]
            if (repo, ref["Manifest"]) not in tagged:
                rows.append((repo, "<none>", ref["Manifest"]))
    return rows or [("<none>", "<none>", record["Manifest"])]


def images(paths: Paths, fmt: str, quiet: bool, digests: bool = False) -> int:
    store = Store(paths.root)
    records = store.images()
    if fmt == "json":
        print(json.dumps(records, indent=2))
        return 0
    if quiet:
        for r in records:
            print(r["Id"][len("sha256:"):][:12])
        return 0
    references = store.references()
    digest_column = f"{'DIGEST':<73}" if digests else ""
    print(f"{'REPOSITORY':<40}{'TAG':<12}{digest_column}{'IMAGE ID':<14}{'LAYERS':<8}SIZE")
    for r in records:
        for repo, tag, manifest in _rows(r, references):
            digest = f"{manifest:<73}" if digests else ""
            print(f"{repo:<40}{tag:<12}{digest}{r['Id'][7:19]:<14}{len(r['Layers']):<8}{_size(r['Size'])}")
    return 0


# docker's column headers of images' fields, for --format 'table ...'.
HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
           "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Layers": "LAYERS"}


def image_rows(paths: Paths) -> list[dict[str, Any]]:
    """A row of ``images --format`` per line of ``images``, by docker's field names."""
    from mini_engine.gotemplate import human_duration

    store = Store(paths.root)
    references = store.references()
    now = datetime.datetime.now(datetime.UTC)
    rows = []
    for r in store.images():
        created = _created(r.get("Created"))
        for repo, tag, manifest in _rows(r, references):
            rows.append({"ID": r["Id"][7:19], "Repository": repo, "Tag": tag, "Digest": manifest,
                         "CreatedSince": f"{human_duration(created, now)} ago" if created else "N/A",
                         "CreatedAt": created.strftime("%Y-%m-%d %H:%M:%S +0000 UTC") if created else "",
                         "Size": _size(r["Size"]), "Layers": len(r["Layers"])})
    return rows


def _created(stamp: str | None) -> datetime.datetime | None:
    """An image config's ``created`` (RFC 3339, maybe with nanoseconds) in UTC, or None."""
    if not stamp:
        return None
    # Python 3.11 reads at most six digits of a second's fraction; Go writes nine.
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", stamp.replace("Z", "+00:00"))
    try:
        when = datetime.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=datetime.UTC)).astimezone(datetime.UTC)


def inspect(paths: Paths, names: list[str]) -> int:
    print(json.dumps(inspected(paths, names), indent=2))
    return 0


def inspected(paths: Paths, names: list[str]) -> list[dict[str, Any]]:
    """docker-like JSON: the record, with the image config's fields alongside;
    ``Manifest`` and ``Layers`` are those of the manifest the name points at."""
    store = Store(paths.root)
    out = []
    for name in names:
        record = store.lookup(name)
        config = json.loads(store.read_blob(record["Id"]))
        out.append(dict(record, Config=config.get("config") or {},
                        RootFS={"Type": "layers", "Layers": [entry["diffID"] for entry in record["Layers"]]},
                        History=config.get("history") or []))
    return out


# Image id -> the ids of the containers that use it (their layers must stay).
# The images do not know the containers; containers/record.py answers, asked
# by the command line (images_in_use) under the store's lock.
Users = Callable[[Store], dict[str, list[str]]]


# [book:rmi]
def rmi(paths: Paths, names: list[str], force: bool, users: Users) -> int:
    """Remove ``names`` (a tag, or a REPOSITORY@sha256:... a pull was given);
    an image left without names and containers goes, then every layer and
    blob no image uses any more."""
    store = Store(paths.root)
    failed = 0
    with store.lock():
        used = users(store)
        for name in names:
            try:
                record = store.lookup(name)
                own = store.names(record["Id"])
                normal = _name_of(store, name)
                if normal not in own and len(own) > 1 and not force:
                    raise ContainerError(f'image "{name}" has {len(own)} names: '
                                         "remove them one by one, or use -f")
                if normal in own and normal is not None and len(own) > 1:
                    store.untag(normal)
                    print(f"Untagged: {normal}")
                    continue
                if record["Id"] in used:
                    holders = ", ".join(c[:12] for c in used[record["Id"]])
                    raise ContainerError(f'image "{name}" is used by container {holders}: remove it first')
                for own_name in own:
                    print(f"Untagged: {own_name}")
                store.remove_image(record["Id"])
                print(f"Deleted: {record['Id']}")
            except ContainerError as exc:
                print(f"mini-engine: {exc}", file=sys.stderr)
                failed = 1
        store.collect_garbage()
    return failed
# [/book:rmi]


def _name_of(store: Store, name: str) -> str | None:
    """``name`` as the store keeps names, or None if it is none (an id)."""
    try:
        return store.normal_name(name)
    except ContainerError:
        return None


def prune(paths: Paths, all_images: bool, users: Users) -> int:
    """Remove images without a name (with -a: every image) no container uses, and the garbage."""
    store = Store(paths.root)
    with store.lock():
        used = users(store)
        for record in store.images():
            # A digest pulled by name is a name too: it stays until removed.
            if record["Id"] in used or (store.names(record["Id"]) and not all_images):
                continue
            store.remove_image(record["Id"])
            print(f"Deleted: {record['Id']}")
        layers, blobs = store.collect_garbage()
    print(f"Removed {layers} layers and {blobs} blobs nothing used", file=sys.stderr)
    return 0


def tag(paths: Paths, source: str, targets: list[str]) -> int:
    """Another name for the image ``source`` means, by the same manifest."""
    store = Store(paths.root)
    with store.lock():
        record = store.lookup(source)
        for target in targets:
            store.tag(record["Id"], target, record["Manifest"])
    return 0


# [book:history]
def history(paths: Paths, name: str, no_trunc: bool, fmt: str) -> int:
    """What made each layer, from the image config's ``history``, newest first, as docker
    prints it: the image's id on the top line only, and the size of each step's layer."""
    store = Store(paths.root)
    record = store.lookup(name)
    config = json.loads(store.read_blob(record["Id"]))
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    entries = config.get("history") or []
    # The history's steps with a layer are the last layers (an image may come
    # from one whose config had no history, as the bundled busybox has none).
    del diff_ids[:max(0, len(diff_ids) - sum(not e.get("empty_layer") for e in entries))]
    rows = []
    for entry in entries:
        size = 0
        if not entry.get("empty_layer") and diff_ids:
            size = store.layer_size(diff_ids.pop(0))
        rows.append({"created": entry.get("created", ""), "created_by": entry.get("created_by", ""),
                     "size": size, "comment": entry.get("comment", ""),
                     "empty_layer": bool(entry.get("empty_layer"))})
    rows.reverse()
    if fmt == "json":
        print(json.dumps([dict(row, id=record["Id"] if i == 0 else "<missing>") for i, row in enumerate(rows)],
                         indent=2))
        return 0
    print(f"{'IMAGE':<14}{'CREATED':<22}{'CREATED BY':<47}{'SIZE':<10}COMMENT")
    for i, row in enumerate(rows):
        image = (record["Id"][7:] if no_trunc else record["Id"][7:19]) if i == 0 else "<missing>"
        created_by = row["created_by"]
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        print(f"{image:<14}{row['created'][:19]:<22}{created_by:<47}{_size(row['size']):<10}{row['comment']}"
              .rstrip())
    return 0
# [/book:history]
