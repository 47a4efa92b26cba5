"""``mini-engine doctor``: which stages can this kernel run, and if not, why.

Chapter 00 reads this module. Every check *tries* the feature, in a child
process that throws away what it made (a new namespace dies with its last
process), and never compares version numbers: a distribution kernel may
have a feature turned off, or backported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass

from mini_engine.base import mountinfo, syscalls
from mini_engine.base.errors import ContainerError
from mini_engine.runtime import cgroups
from mini_engine.runtime.namespaces import CLONE_FLAGS
from mini_engine.stages import STAGES


@dataclass
class Feature:
    name: str
    ok: bool
    detail: str = ""


def in_child(test: Callable[[], None]) -> str | None:
    """Run ``test`` in a forked child; None if it passed, else why it failed."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            test()
            os._exit(0)
        except BaseException as exc:  # report anything, unwind nothing
            os.write(write, str(exc).encode()[:500])
            os._exit(1)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        why = f.read().decode()
    _, status = os.waitpid(pid, 0)
    return None if status == 0 else (why or f"exit status {status}")


def check_namespace(kind: str) -> Feature:
    why = in_child(lambda: syscalls.unshare(CLONE_FLAGS[kind]))
    return Feature(f"namespace {kind}", why is None, why or "")


def v1_controllers() -> set[str]:
    """Controllers some cgroup v1 hierarchy holds (and so v2 cannot have)."""
    held: set[str] = set()
    for mount in mountinfo.mounts():
        if mount.fstype == "cgroup":
            held.update(mount.super_options)
    return held


def check_cgroups() -> list[Feature]:
    try:
        root = cgroups.mount_point()
    except ContainerError as exc:
        return [Feature("cgroup v2", False, str(exc))]
    with open(os.path.join(root, "cgroup.controllers")) as f:
        available = set(f.read().split())
    features = [Feature("cgroup v2", True, f"mounted at {root}")]
    on_v1 = v1_controllers()
    for controller in ("memory", "cpu", "pids", "io"):
        if controller in available:
            features.append(Feature(f"cgroup v2 {controller}", True, "delegatable"))
        elif controller in on_v1 or (controller == "io" and "blkio" in on_v1):
            features.append(Feature(f"cgroup v2 {controller}", False,
                                    "held by cgroup v1 here, which the system uses"))
        else:
            features.append(Feature(f"cgroup v2 {controller}", False, "not in cgroup.controllers"))
    return features


def _mount_overlay() -> None:
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    base = tempfile.mkdtemp(prefix="mini-engine-doctor-")
    try:
        for d in ("lower", "upper", "work", "merged"):
            os.mkdir(os.path.join(base, d))
        data = f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work"
        syscalls.mount("overlay", f"{base}/merged", "overlay", 0, data)
        syscalls.umount2(f"{base}/merged")
    finally:
        shutil.rmtree(base)


def _load_seccomp_filter() -> None:
    """Install a one-instruction filter (return ALLOW): proves the kernel takes BPF."""
    from mini_engine.runtime import seccomp

    program = seccomp.Program()
    program.emit(seccomp.BPF_RET_K, seccomp.RET_ALLOW)
    syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    seccomp.load(program.assemble())


def _nft_table() -> None:
    syscalls.unshare(syscalls.CLONE_NEWNET)
    result = subprocess.run(["nft", "add", "table", "inet", "mini_engine_doctor"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip())


def _veth_and_bridge() -> None:
    syscalls.unshare(syscalls.CLONE_NEWNET)
    from mini_engine.network.netlink import IPRoute

    with IPRoute() as ipr:
        ipr.link_add("doctor0", "veth", peer="doctor1")
        ipr.link_add("doctorbr", "bridge")


def features() -> list[Feature]:
    found = [Feature("root", os.geteuid() == 0, "" if os.geteuid() == 0 else "run as root")]
    found += [check_namespace(kind) for kind in CLONE_FLAGS]
    found += check_cgroups()
    for name, test in (("overlayfs", _mount_overlay), ("seccomp", _load_seccomp_filter),
                       ("veth and bridge", _veth_and_bridge)):
        why = in_child(test)
        found.append(Feature(name, why is None, why or ""))
    if shutil.which("nft") is None:
        found.append(Feature("nftables", False, "nft is not installed (apt-get install nftables)"))
    else:
        why = in_child(_nft_table)
        found.append(Feature("nftables", why is None, why or ""))
    return found


# What each stage needs, on top of the stages below it. "optional": the
# stage works without it, minus what the feature gives.
NEEDS: dict[int, tuple[list[str], list[str]]] = {
    0: ([], []),
    1: (["root"], []),
    2: ([f"namespace {k}" for k in ("pid", "mount", "uts", "ipc", "network")],
        ["namespace cgroup", "namespace time", "namespace user"]),
    3: (["cgroup v2"], [f"cgroup v2 {c}" for c in ("memory", "cpu", "pids", "io")]),
    4: (["overlayfs"], []),
    5: ([], []),
    6: (["seccomp"], []),
    7: (["veth and bridge", "nftables"], []),
    8: ([], []),
    9: ([], []),
}


def verdicts(found: list[Feature]) -> list[dict[str, object]]:
    ok = {f.name: f.ok for f in found}
    out: list[dict[str, object]] = []
    below_ok = True
    for stage in STAGES:
        required, optional = NEEDS[stage.number]
        missing = [n for n in required if not ok.get(n)]
        partial = [n for n in optional if not ok.get(n)]
        if missing:
            status, why = "no", "missing: " + ", ".join(missing)
        elif not below_ok:
            status, why = "no", "a stage below it cannot run here"
        elif partial:
            status, why = "partly", "without: " + ", ".join(partial)
        else:
            status, why = "yes", ""
        if stage.number == 3 and partial:
            why += " (limits on these are refused; the lab VM has them: make vm-test)"
        if not stage.built:
            # Say what the kernel would allow all the same: a learner
            # writing that stage wants to know.
            status, why = "not built", f"kernel: {status}{', ' + why if why else ''}"
        below_ok = below_ok and not missing
        out.append({"number": stage.number, "slug": stage.slug, "works": status, "why": why})
    return out


def main(as_json: bool = False) -> int:
    found = features()
    stages = verdicts(found)
    if as_json:
        print(json.dumps({"features": [asdict(f) for f in found], "stages": stages}, indent=2))
        return 0
    print("Kernel features (each one tried, in a throwaway child):")
    for f in found:
        print(f"  {'ok' if f.ok else 'NO':<4}{f.name:<20}{f.detail}")
    print("\nStages:")
    for s in stages:
        print(f"  {s['number']} {s['slug']:<12} {s['works']:<10}{s['why']}")
    return 0
