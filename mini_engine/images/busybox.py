"""The bundled image: a root filesystem made from Debian's busybox-static, offline.

Chapter 01 reads this module. Man pages: busybox(1), elf(5).

Every lab before the images chapter runs on it. It is one static binary
(it needs no shared libraries, so nothing else of the host's has to be
copied) plus a symlink per applet, a few files in /etc, and the workbench's
probe. The images chapter turns it into a real OCI image in the store
(``import_into``): one layer, a config and a manifest, tagged
``localhost/busybox:latest`` as podman tags images made on the machine.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from mini_engine.base.elf import a64, executable
from mini_engine.base.errors import ContainerError
from mini_engine.images.imageconfig import host_platform
from mini_engine.paths import Paths

if TYPE_CHECKING:
    from mini_engine.images.store import Store

BUSYBOX = "/bin/busybox"
NAME = "busybox"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# An OCI image config (image-spec config.md), as a registry would serve it.
IMAGE_CONFIG: dict[str, Any] = {
    "architecture": host_platform()["architecture"],
    "os": "linux",
    "config": {"Env": [f"PATH={PATH}"], "Cmd": ["sh"]},
    "rootfs": {"type": "layers", "diff_ids": []},
}

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"

# Debian 12's busybox-static (1.35) is built without FEATURE_WGET_TIMEOUT, yet
# its wget still hands -T to getopt32 as a number to store, with NULL for
# where: `wget -T 5 URL` dies of SIGSEGV (exit 139) before it sends a packet.
# The image's copy renames -T in that list to a byte nobody can type, so
# wget refuses -T as its usage says it should.
WGET_OPTIONS = b"cqSO:o:P:Y:U:T:+"
WGET_OPTIONS_WITHOUT_T = b"cqSO:o:P:Y:U:\x01:+"

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


STAMP_LABEL = "org.mini-engine.bundled"


def euid_program(machine: str | None = None) -> bytes:
    """A complete program, 136 bytes: it exits with its effective uid.

    Made setuid-root in an image, it shows whether execve granted root:
    exit code 0 if it did, the caller's uid (mod 256) if no_new_privs
    stopped it. No compiler needed: five instructions (four on aarch64).
    """
    return executable({
        "x86_64": bytes.fromhex(
            "b86b000000"  # mov eax, 107    geteuid
            "0f05"        # syscall
            "89c7"        # mov edi, eax    its result is exit's argument
            "b83c000000"  # mov eax, 60     exit
            "0f05"        # syscall
        ),
        "aarch64": a64(
            0xD28015E8,   # mov x8, #175    geteuid
            0xD4000001,   # svc #0          its result, in x0, is exit's argument
            0xD2800BA8,   # mov x8, #93     exit
            0xD4000001,   # svc #0
        ),
    }, machine)


# [book:pause-program]
def pause_program(machine: str | None = None) -> bytes:
    """A pod's infra process, a program of 228 bytes (260 on aarch64): it holds the
    pod's namespaces open by being alive in them, and does nothing else.

    As PID 1 of a PID namespace it has two duties. The kernel gives PID 1
    no default action for a signal: a signal it has no handler for is
    dropped, so SIGTERM and SIGINT get a handler, which exits. And orphans
    of the namespace become its children: SIGCHLD set to SIG_IGN makes the
    kernel reap them itself (wait(2), NOTES), so none is left a zombie.
    Then it sleeps in pause(2) (ppoll(2) on aarch64, which has no pause),
    for ever. podman's infra runs catatonit -P, which does the same in C.
    """
    return executable({
        "x86_64": bytes.fromhex(
            "31c0"          # xor eax, eax
            "505050"        # push rax (x3)   struct sigaction on the stack: mask, restorer, flags
            "6a01"          # push 1          sa_handler = SIG_IGN
            "b80d000000"    # mov eax, 13     rt_sigaction
            "bf11000000"    # mov edi, 17     SIGCHLD
            "4889e6"        # mov rsi, rsp
            "31d2"          # xor edx, edx    no old action wanted
            "41ba08000000"  # mov r10d, 8     sizeof(sigset_t)
            "0f05"          # syscall
            "488d053e000000"  # lea rax, [rip+0x3e]   the handler: `leave`, below
            "48890424"      # mov [rsp], rax  sa_handler
            "48c744240800000004"  # mov qword [rsp+8], SA_RESTORER (x86-64's kernel insists on one)
            "4889442410"    # mov [rsp+16], rax  sa_restorer: never used, the handler exits
            "b80d000000"    # mov eax, 13     rt_sigaction
            "bf0f000000"    # mov edi, 15     SIGTERM
            "4889e6"        # mov rsi, rsp
            "31d2"          # xor edx, edx
            "41ba08000000"  # mov r10d, 8
            "0f05"          # syscall
            "b80d000000"    # mov eax, 13     rt_sigaction
            "bf02000000"    # mov edi, 2      SIGINT, the same action
            "0f05"          # syscall
            "b822000000"    # again: mov eax, 34   pause
            "0f05"          # syscall
            "ebf7"          # jmp again       (a signal ignored may still wake it)
            "b8e7000000"    # leave: mov eax, 231  exit_group
            "31ff"          # xor edi, edi    status 0
            "0f05"          # syscall
        ),
        "aarch64": a64(
            0xD10083FF,     # sub sp, sp, #32      struct sigaction on the stack
            0xD2800020,     # mov x0, #1           SIG_IGN
            0xA9007FE0,     # stp x0, xzr, [sp]    sa_handler, sa_flags
            0xA9017FFF,     # stp xzr, xzr, [sp, #16]  sa_restorer, sa_mask
            0xD2800220,     # mov x0, #17          SIGCHLD
            0x910003E1,     # mov x1, sp
            0xD2800002,     # mov x2, #0
            0xD2800103,     # mov x3, #8           sizeof(sigset_t)
            0xD28010C8,     # mov x8, #134         rt_sigaction
            0xD4000001,     # svc #0
            0x100002C0,     # adr x0, leave        the handler
            0xD2A08001,     # mov x1, #0x4000000   SA_RESTORER
            0xA90007E0,     # stp x0, x1, [sp]
            0xF9000BE0,     # str x0, [sp, #16]    sa_restorer: never used, the handler exits
            0xD28001E0,     # mov x0, #15          SIGTERM
            0x910003E1,     # mov x1, sp
            0xD2800002,     # mov x2, #0
            0xD2800103,     # mov x3, #8
            0xD28010C8,     # mov x8, #134         rt_sigaction
            0xD4000001,     # svc #0
            0xD2800040,     # mov x0, #2           SIGINT, the same action
            0x910003E1,     # mov x1, sp
            0xD28010C8,     # mov x8, #134
            0xD4000001,     # svc #0
            0xD2800000,     # again: mov x0, #0    ppoll(NULL, 0, NULL, NULL, 0): no fds, no timeout
            0xD2800001,     # mov x1, #0
            0xD2800002,     # mov x2, #0
            0xD2800003,     # mov x3, #0
            0xD2800004,     # mov x4, #0
            0xD2800928,     # mov x8, #73          ppoll
            0xD4000001,     # svc #0
            0x17FFFFF9,     # b again
            0xD2800000,     # leave: mov x0, #0
            0xD2800BC8,     # mov x8, #94          exit_group
            0xD4000001,     # svc #0
        ),
    }, machine)
# [/book:pause-program]


PAUSE = "/usr/local/bin/pause"  # where the bundled image keeps it


def stamp() -> str:
    """What the bundled image is made of: busybox and its mend, the probe, the files
    of /etc. When any of them changes (an upgrade), the image is built again."""
    digest = hashlib.sha256(resources.files("mini_engine").joinpath("probe.sh").read_bytes())
    digest.update(WGET_OPTIONS + WGET_OPTIONS_WITHOUT_T)
    digest.update(json.dumps(ETC, sort_keys=True).encode())
    digest.update(euid_program())
    digest.update(pause_program())
    st = os.stat(BUSYBOX) if os.path.exists(BUSYBOX) else None
    digest.update(f"{st.st_size}:{st.st_mtime_ns}".encode() if st else b"-")
    return digest.hexdigest()[:16]


def _current(directory: str) -> bool:
    try:
        with open(os.path.join(directory, "image.json")) as f:
            stamped: str | None = json.load(f)["config"].get("Labels", {}).get(STAMP_LABEL)
            return stamped == stamp()
    except (OSError, ValueError, KeyError):
        return False


def image(paths: Paths) -> Image:
    """The bundled image, built on first use (under a lock: tests run in parallel)."""
    directory = os.path.join(paths.bundled, NAME)
    if not _current(directory):
        os.makedirs(paths.bundled, exist_ok=True)
        with open(os.path.join(paths.bundled, f".{NAME}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _current(directory):
                if os.path.exists(directory):  # an older build: set it aside, then remove it
                    old = tempfile.mkdtemp(dir=paths.bundled, prefix=".old-")
                    os.rename(directory, os.path.join(old, NAME))
                    shutil.rmtree(old, ignore_errors=True)
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


def mend_wget(binary: str) -> None:
    """Make the busybox at ``binary`` refuse ``wget -T`` rather than crash on it.

    Only a build without wget's timeout needs it: its usage shows no -T.
    A busybox whose option list differs is left as it is.
    """
    usage = subprocess.run([binary, "wget", "--help"], capture_output=True, text=True).stderr
    if "-T SEC" in usage:
        return
    with open(binary, "r+b") as f:
        data = f.read()
        if data.count(WGET_OPTIONS) != 1:
            return
        f.seek(data.index(WGET_OPTIONS))
        f.write(WGET_OPTIONS_WITHOUT_T)


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
        mend_wget(os.path.join(rootfs, "bin/busybox"))
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
        # Chapter 06's setuid-root program: it exits with its effective uid,
        # so a learner sees whether execve made them root.
        euid = os.path.join(rootfs, "usr/local/bin/euid")
        with open(euid, "wb") as f:
            f.write(euid_program())
        os.chmod(euid, 0o4755)
        # Chapter 10's pause: what a pod's infra container runs.
        with open(os.path.join(rootfs, PAUSE.lstrip("/")), "wb") as f:
            f.write(pause_program())
        os.chmod(os.path.join(rootfs, PAUSE.lstrip("/")), 0o755)
        with open(os.path.join(work, "image.json"), "w") as f:
            config = json.loads(json.dumps(IMAGE_CONFIG))
            config["config"]["Labels"] = {STAMP_LABEL: stamp()}
            json.dump(config, f, indent=2)
        # mkdtemp made it 0700; a container's root mapped to an unprivileged
        # uid (--userns) must be able to walk through it.
        os.chmod(work, 0o755)
        os.rename(work, directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
# [/book:build-busybox]


STORE_TAG = f"localhost/{NAME}:latest"


def is_bundled_name(name: str) -> bool:
    """Does ``name`` mean the bundled image when the store lacks it (busybox, busybox:latest)?"""
    from mini_engine.images import reference

    try:
        ref = str(reference.parse(name))
    except ContainerError:
        return False
    return ref in (f"docker.io/library/{NAME}:latest", STORE_TAG)


def is_stale(store: Store, record: dict[str, Any]) -> bool:
    """Is ``record`` the bundled image, but of an older build (a new probe, say)?"""
    if STORE_TAG not in store.images_tags(record["Id"]):
        return False
    config = json.loads(store.read_blob(record["Id"]))
    stamped: str | None = (config.get("config") or {}).get("Labels", {}).get(STAMP_LABEL)
    return stamped != stamp()


# [book:import-busybox]
def import_into(paths: Paths, store: Store) -> None:
    """Make the bundled root filesystem a one-layer OCI image in ``store``."""
    from mini_engine.images.store import CONFIG_OCI, MANIFEST_OCI, Descriptor

    bundled = image(paths)
    with tempfile.TemporaryFile(dir=paths.root) as layer_tar:
        # Reproducible: sorted names, owner root, one fixed time, so the
        # same busybox always gives the same digests.
        def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            return info

        with tarfile.open(fileobj=layer_tar, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(os.listdir(bundled.rootfs)):
                tar.add(os.path.join(bundled.rootfs, name), arcname=name, filter=normalise)
        layer_tar.seek(0)
        diff_id = "sha256:" + hashlib.file_digest(layer_tar, "sha256").hexdigest()
        layer_tar.seek(0)
        with store.lock():
            blob = store.put_blob(layer_tar, None)
            config = dict(bundled.config, rootfs={"type": "layers", "diff_ids": [diff_id]},
                          created="1970-01-01T00:00:00Z")
            config_blob = store.put_bytes(json.dumps(config, indent=2).encode(), CONFIG_OCI)
            manifest = {"schemaVersion": 2, "mediaType": MANIFEST_OCI, "config": config_blob.to_json(),
                        "layers": [Descriptor(LAYER_TAR, blob.digest, blob.size).to_json()]}
            written = store.put_bytes(json.dumps(manifest, indent=2).encode(), MANIFEST_OCI)
            store.add_image(written.digest, [STORE_TAG])
# [/book:import-busybox]
