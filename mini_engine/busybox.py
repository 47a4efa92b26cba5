"""The bundled image: a root filesystem made from Debian's busybox-static, offline.

Chapter 01 reads this module. Man pages: busybox(1), elf(5).

Every lab before the images chapter runs on it. It is one static binary
(it needs no shared libraries, so nothing else of the host's has to be
copied) plus a symlink per applet, a few files in /etc, and the workbench's
probe. The images chapter turns it into a real OCI image in the store.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from typing import Any

from mini_engine.paths import Paths
from mini_engine.runtime.errors import ContainerError

BUSYBOX = "/bin/busybox"
NAME = "busybox"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# An OCI image config (image-spec config.md), as a registry would serve it.
IMAGE_CONFIG: dict[str, Any] = {
    "architecture": "amd64",
    "os": "linux",
    "config": {"Env": [f"PATH={PATH}"], "Cmd": ["sh"]},
    "rootfs": {"type": "layers", "diff_ids": []},
}

ETC = {
    "passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "group": "root:x:0:\ntty:x:5:\nnobody:x:65534:\n",
    "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
}


@dataclass(frozen=True)
class Image:
    name: str
    rootfs: str
    config: dict[str, Any]


def image(paths: Paths) -> Image:
    """The bundled image, built on first use (under a lock: tests run in parallel)."""
    directory = os.path.join(paths.images, NAME)
    if not os.path.exists(os.path.join(directory, "image.json")):
        os.makedirs(paths.images, exist_ok=True)
        with open(os.path.join(paths.images, f".{NAME}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(os.path.join(directory, "image.json")):
                build(directory)
    with open(os.path.join(directory, "image.json")) as f:
        return Image(NAME, os.path.join(directory, "rootfs"), json.load(f))


def is_static(path: str) -> bool:
    """True if the ELF file at ``path`` asks for no program interpreter (ld.so)."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:5] != b"\x7fELF\x02":  # 64-bit ELF
            return False
        phoff, = struct.unpack_from("<Q", header, 32)
        phentsize, phnum = struct.unpack_from("<HH", header, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    PT_INTERP = 3
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != PT_INTERP for i in range(phnum))


# [book:build-busybox]
def build(directory: str) -> None:
    """Make ``directory``/rootfs and ``directory``/image.json from the host's busybox."""
    if not os.path.exists(BUSYBOX):
        raise ContainerError(
            f"{BUSYBOX} is missing: install busybox-static (scripts/install-system-deps.sh)"
        )
    if not is_static(BUSYBOX):
        raise ContainerError(
            f"{BUSYBOX} is dynamically linked: install busybox-static, not busybox"
        )
    parent = os.path.dirname(directory)
    work = tempfile.mkdtemp(dir=parent, prefix=".build-")
    try:
        rootfs = os.path.join(work, "rootfs")
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc",
                  "proc", "sys", "dev", "root", "home", "var/tmp", "tmp"):
            os.makedirs(os.path.join(rootfs, d), exist_ok=True)
        os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
        os.chmod(os.path.join(rootfs, "var/tmp"), 0o1777)
        os.chmod(os.path.join(rootfs, "root"), 0o700)
        shutil.copy(BUSYBOX, os.path.join(rootfs, "bin/busybox"))
        # One binary, many names: busybox looks at argv[0] to pick the applet.
        applets = subprocess.run([BUSYBOX, "--list-full"], capture_output=True,
                                 text=True, check=True).stdout.split()
        for applet in applets:
            link = os.path.join(rootfs, applet)
            if not os.path.lexists(link):
                os.symlink("/bin/busybox", link)
        for name, text in ETC.items():
            with open(os.path.join(rootfs, "etc", name), "w") as f:
                f.write(text)
        probe = os.path.join(rootfs, "usr/local/bin/probe")
        with open(probe, "w") as f:
            f.write(resources.files("mini_engine").joinpath("probe.sh").read_text())
        os.chmod(probe, 0o755)
        with open(os.path.join(work, "image.json"), "w") as f:
            json.dump(IMAGE_CONFIG, f, indent=2)
        # mkdtemp made it 0700; a container's root mapped to an unprivileged
        # uid (--userns) must be able to walk through it.
        os.chmod(work, 0o755)
        os.rename(work, directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
# [/book:build-busybox]
