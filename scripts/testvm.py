#!/usr/bin/python3
"""A throwaway QEMU VM with cgroup v2 unified, to test and run what needs it.

    scripts/testvm.py build              fetch the kernel, make the initramfs (cached)
    scripts/testvm.py run -- CMD...      boot, run CMD in this directory as root, power off;
                                         exit with CMD's exit code
    scripts/testvm.py run --systemd -- CMD...
                                         the same with systemd as PID 1 (--systemd-cgroup)

Why: a host that keeps the memory, cpu and pids controllers on cgroup v1
(this project's CI machine does, and its system uses them) cannot delegate
them on v2, and must not be touched. The VM boots a stock Debian kernel
(from the linux-image-amd64 package, unpacked with dpkg -x, never
installed) under software emulation, sees the host's "/" read-only over 9p
with a tmpfs on top for writes, mounts cgroup2 with every controller, and
runs one command. Nothing it writes reaches the host.

Stdlib only, and Debian 12's Python 3.11.2 is enough: scripts/test.sh runs it
with the venv's Python, which is Debian's /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import lzma
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("MINI_ENGINE_VM_CACHE", "/var/cache/mini-engine/vm"))
HERE = Path(__file__).resolve().parent
INIT2 = HERE / "testvm-init.sh"
INIT_SYSTEMD = HERE / "testvm-systemd.sh"
BUSYBOX = "/bin/busybox"
START = "MINI_VM_START"
MARKER = "MINI_VM_EXIT="

# In dependency order (the .deb has no modules.dep); init retries in passes anyway.
MODULES = [
    "virtio", "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
    "netfs", "fscache", "9pnet", "9pnet_virtio", "9p", "overlay",
    # a pod network through the CNI bridge plugin (tests/test_cri.py)
    "llc", "stp", "bridge", "veth",
]

# The initramfs's /init: just enough to mount the host's root and leave.
INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
init2=$(sed -n 's/.*mini.init=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for pass in 1 2 3 4; do
    for m in /modules/*.ko; do insmod "$m" 2>/dev/null; done
done
mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose host /host || {
    echo "testvm: cannot mount the host's root over 9p"; poweroff -f; }
mount -t tmpfs -o size=75% tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
# switch_root, not chroot: setns into a container's mount namespace needs
# a real root mount (runc's exec fails after a plain chroot).
exec switch_root /newroot "$init2"
"""


def kernel_package() -> str:
    """The versioned linux-image package that linux-image-amd64 points at."""
    for attempt in range(2):
        out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"],
                             capture_output=True, text=True).stdout
        match = re.search(r"Depends: (linux-image-[\w.+-]+)", out)
        if match:
            return match.group(1)
        if attempt == 0:  # a fresh machine has no package lists yet
            subprocess.run(["apt-get", "update", "-qq"], check=True)
    raise SystemExit("testvm: apt knows no linux-image-amd64 package")


def build() -> Path:
    """Kernel and initramfs for the current linux-image-amd64, built once and cached."""
    package = kernel_package()
    # What goes into the initramfs is part of the name: a cache made before
    # a module was added is not taken for one that has it.
    recipe = hashlib.sha256((INIT + "\n".join(MODULES)).encode()).hexdigest()[:12]
    target = CACHE / f"{package}-{recipe}"
    if (target / "initramfs.gz").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=CACHE, prefix=".build-"))
    try:
        subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package],
                       cwd=work, check=True, stdout=subprocess.DEVNULL)
        deb = next(work.glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
        vmlinuz = next((work / "x" / "boot").glob("vmlinuz-*"))
        shutil.copy(vmlinuz, work / "vmlinuz")
        (work / "initramfs.gz").write_bytes(initramfs(work / "x"))
        shutil.rmtree(work / "x")
        deb.unlink()
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def initramfs(unpacked: Path) -> bytes:
    """A gzip'd newc cpio: busybox-static, /init, and the modules, decompressed."""
    files: list[tuple[str, int, bytes]] = [(d, 0o040755, b"") for d in
                                           ("bin", "proc", "sys", "dev", "modules")]
    files.append(("bin/busybox", 0o100755, Path(BUSYBOX).read_bytes()))
    files.append(("init", 0o100755, INIT.encode()))
    for i, name in enumerate(MODULES):
        found = [p for p in unpacked.glob("lib/modules/*/kernel/**/*")
                 if p.name in (f"{name}.ko", f"{name}.ko.xz")]
        if not found:
            raise SystemExit(f"testvm: module {name} is not in the kernel package")
        data = found[0].read_bytes()
        if found[0].suffix == ".xz":
            data = lzma.decompress(data)
        files.append((f"modules/{i:02d}-{name}.ko", 0o100644, data))
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        for ino, (name, mode, data) in enumerate(files, start=1):
            f.write(_cpio_entry(ino, name, mode, data))
        f.write(_cpio_entry(0, "TRAILER!!!", 0, b""))
    return buf.getvalue()


def _cpio_entry(ino: int, name: str, mode: int, data: bytes) -> bytes:
    """One member of a "newc" cpio archive, the format the kernel unpacks (initramfs)."""
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
    header = b"070701" + b"".join(b"%08X" % v for v in fields)
    pad = b"\0" * (-(len(header) + len(encoded)) % 4)
    return header + encoded + pad + data + b"\0" * (-len(data) % 4)


def run(command: list[str], memory: str = "2G", timeout: float = 1200, systemd: bool = False) -> int:
    """Boot, run ``command`` in the current directory, return its exit code
    (``systemd``: with systemd as PID 1, which runs it as a service)."""
    images = build()
    with tempfile.NamedTemporaryFile("w", dir=CACHE, prefix="cmd-", suffix=".sh",
                                     delete=False) as f:
        f.write(f"cd {shlex.quote(os.getcwd())}\n")
        for key in ("PATH", "CI", "MINI_ENGINE_VM_CACHE"):
            if key in os.environ:
                f.write(f"export {key}={shlex.quote(os.environ[key])}\n")
        f.write(shlex.join(command) + "\n")
        cmdfile = f.name
    os.chmod(cmdfile, 0o644)
    init = INIT_SYSTEMD if systemd else INIT2
    append = (f"console=ttyS0 quiet loglevel=1 panic=-1 mini.init={init} mini.cmd={cmdfile} "
              "systemd.unified_cgroup_hierarchy=1 systemd.show_status=false")
    qemu = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", memory, "-smp", "2",
        "-kernel", str(images / "vmlinuz"), "-initrd", str(images / "initramfs.gz"),
        "-append", append, "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
        "-virtfs", "local,path=/,mount_tag=host,security_model=passthrough,readonly=on,multidevs=remap",
    ]
    code = None
    boot: list[str] = []  # the firmware's and kernel's lines, shown only if boot fails
    started = False
    try:
        proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").replace("\r", "")
            if START in line:
                started = True
            elif line.startswith(MARKER):
                code = int(line[len(MARKER):])
                started = False  # what follows is the kernel powering off
            elif started:
                sys.stdout.write(line)
                sys.stdout.flush()
            elif code is None:
                boot.append(line)
        proc.wait(timeout=timeout)
    finally:
        os.unlink(cmdfile)
    if code is None:
        sys.stdout.write("".join(boot))
        print("testvm: the VM stopped without reporting an exit code", file=sys.stderr)
        return 125
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("build", help="fetch the kernel and make the initramfs (cached)")
    r = sub.add_parser("run", help="boot and run a command in the current directory")
    r.add_argument("--memory", default="2G")
    r.add_argument("--systemd", action="store_true", help="boot with systemd as PID 1")
    r.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.what == "build":
        print(build())
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command")
    return run(command, args.memory, systemd=args.systemd)


if __name__ == "__main__":
    raise SystemExit(main())
