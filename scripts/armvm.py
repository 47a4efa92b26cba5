#!/usr/bin/python3
"""An aarch64 VM under QEMU's emulation, to run the engine as on an ARM machine.

    scripts/armvm.py build               make the arm64 Debian tree (cached; needs the network)
    scripts/armvm.py run -- CMD...       boot, run CMD in this directory as root, power off;
                                         exit with CMD's exit code
    make arm-test                        stages 0-2's tests in it (slow: see below)

Why: the engine's hand-written programs and its seccomp filter are written
per machine, x86-64 and aarch64, and a learner on an ARM laptop runs the
arm64 ones. On an x86-64 machine only emulation runs them whole: QEMU's
``virt`` board with a ``max`` CPU under TCG, a Debian arm64 kernel, and a
Debian arm64 tree (bookworm, by mmdebstrap: Python, pytest, busybox-static,
the kernel and its modules) shared read-only over 9p with a tmpfs on top,
as scripts/testvm.py shares the host's "/". This directory is shared
read-only at the same path, so the command sees the repository as here.

TCG emulates every aarch64 instruction in software: Python starts in
seconds instead of milliseconds, so the stage tests take many minutes.
Nothing here is part of CI; `make arm-test` runs it by hand.
"""

from __future__ import annotations

import argparse
import gzip
import io
import lzma
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from testvm import MARKER, START, _cpio_entry  # the same cpio, the same markers

CACHE = Path(os.environ.get("MINI_ENGINE_ARM_CACHE", "/var/cache/mini-engine/arm64"))
HERE = Path(__file__).resolve().parent
INIT2 = HERE / "testvm-init.sh"
# The tools a Debian system has (the extract variant brings only what is named
# and its dependencies), the engine's Python, the tests' pytest, the kernel.
PACKAGES = ["base-files", "base-passwd", "dash", "bash", "coreutils", "mount", "hostname", "grep",
            "sed", "findutils", "procps", "tar", "gzip", "diffutils", "libc-bin", "util-linux",
            "iproute2", "kmod", "busybox-static", "python3", "python3-pytest",
            "python3-pytest-timeout", "python3-zstandard", "linux-image-arm64"]
# What the 9p root and the overlay need, in dependency order; virtio itself
# is built into Debian's arm64 kernel. The initramfs loads them in passes.
MODULES = ["virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "netfs", "fscache",
           "9pnet", "9pnet_virtio", "9p", "overlay"]

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for pass in 1 2 3 4; do
    for m in /modules/*.ko; do insmod "$m" 2>/dev/null; done
done
mkdir -p /tree /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose tree /tree || {
    echo "armvm: cannot mount the arm64 tree over 9p"; poweroff -f; }
mount -t tmpfs -o size=75% tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/tree,upperdir=/rw/upper,workdir=/rw/work /newroot
mkdir -p "/newroot$WORKDIR" /newroot/tmp
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose work "/newroot$WORKDIR"
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
cp /cmd.sh /newroot/cmd.sh
cp /init2.sh /newroot/init2.sh
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/sh /init2.sh
"""


def build() -> Path:
    """The arm64 tree, made once: Debian's packages unpacked (no maintainer scripts run)."""
    tree = CACHE / "root"
    if (tree / "usr" / "bin" / "python3").exists():
        return tree
    CACHE.mkdir(parents=True, exist_ok=True)
    if shutil.which("mmdebstrap") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "mmdebstrap", "qemu-system-arm"], check=True)
    work = CACHE / ".root-build"
    shutil.rmtree(work, ignore_errors=True)
    # extract: unpack the packages and their dependencies, run nothing of
    # theirs (which would need arm64 emulation on this machine).
    subprocess.run(["mmdebstrap", "--arch=arm64", "--variant=extract",
                    f"--include={','.join(PACKAGES)}", "bookworm", str(work)], check=True)
    work.rename(tree)
    return tree


def initramfs(tree: Path, command: str, workdir: str) -> bytes:
    """A gzip'd newc cpio: the tree's busybox, /init, the command, and the modules."""
    files: list[tuple[str, int, bytes]] = [(d, 0o040755, b"") for d in
                                           ("bin", "proc", "sys", "dev", "modules")]
    files.append(("bin/busybox", 0o100755, (tree / "bin" / "busybox").read_bytes()))
    files.append(("init", 0o100755, INIT.replace("$WORKDIR", shlex.quote(workdir)).encode()))
    files.append(("cmd.sh", 0o100644, command.encode()))
    files.append(("init2.sh", 0o100644, INIT2.read_bytes()))
    found = {p.name.split(".ko")[0]: p for p in tree.glob("lib/modules/*/kernel/**/*.ko*")}
    for i, name in enumerate(MODULES):
        if name not in found:
            raise SystemExit(f"armvm: module {name} is not in the kernel package")
        data = found[name].read_bytes()
        if found[name].suffix == ".xz":
            data = lzma.decompress(data)
        files.append((f"modules/{i:02d}-{name}.ko", 0o100644, data))
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        for ino, (name, mode, data) in enumerate(files, start=1):
            f.write(_cpio_entry(ino, name, mode, data))
        f.write(_cpio_entry(0, "TRAILER!!!", 0, b""))
    return buf.getvalue()


def run(command: list[str], memory: str = "3G", timeout: float = 7200) -> int:
    """Boot, run ``command`` in the current directory, return its exit code."""
    tree = build()
    workdir = os.getcwd()
    script = f"cd {shlex.quote(workdir)}\nexport PYTHONDONTWRITEBYTECODE=1\n{shlex.join(command)}\n"
    kernel = next((tree / "boot").glob("vmlinuz-*"))
    with tempfile.TemporaryDirectory(prefix="armvm-") as tmp:
        initrd = Path(tmp) / "initramfs.gz"
        initrd.write_bytes(initramfs(tree, script, workdir))
        append = ("console=ttyAMA0 quiet loglevel=1 panic=-1 mini.cmd=/cmd.sh "
                  "systemd.unified_cgroup_hierarchy=1")
        qemu = [
            "qemu-system-aarch64", "-machine", "virt", "-cpu", "max", "-accel", "tcg",
            "-m", memory, "-smp", "2", "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", append, "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
            "-virtfs", f"local,path={tree},mount_tag=tree,security_model=passthrough,readonly=on,"
                       "multidevs=remap",
            "-virtfs", f"local,path={workdir},mount_tag=work,security_model=passthrough,readonly=on,"
                       "multidevs=remap",
        ]
        code = None
        boot: list[str] = []  # the kernel's lines, shown only if the boot fails
        started = False
        proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").replace("\r", "")
            if START in line:
                started = True
            elif line.startswith(MARKER):
                code = int(line[len(MARKER):])
                started = False
            elif started:
                sys.stdout.write(line)
                sys.stdout.flush()
            elif code is None:
                boot.append(line)
        proc.wait(timeout=timeout)
    if code is None:
        sys.stdout.write("".join(boot))
        print("armvm: the VM stopped without reporting an exit code", file=sys.stderr)
        return 125
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("build", help="make the arm64 tree (cached)")
    r = sub.add_parser("run", help="boot and run a command in the current directory")
    r.add_argument("--memory", default="3G")
    r.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.what == "build":
        print(build())
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command")
    return run(command, args.memory)


if __name__ == "__main__":
    raise SystemExit(main())
