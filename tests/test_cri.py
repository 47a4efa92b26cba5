"""The Kubernetes path: the kubelet's calls, through containerd's CRI plugin, to mini-runc.

Chapter "From one machine to a cluster" (chapters/cluster.md). The kubelet
drives a node's runtime through the Container Runtime Interface, gRPC on a
unix socket (k8s.io/cri-api, runtime.v1). Debian has no crictl, so the
client is generated here, at test time, from the vendored proto
(third_party/cri-api) with grpcio-tools, and called as the kubelet calls it.

One private containerd (1.6, Debian's) serves the module: its root and state
under /run (its overlay snapshots cannot keep their upper directories on the
test VM's overlay /tmp), the CRI plugin with two runtime handlers, mini-runc
(the chapter's own config file) and runc for comparison, the cgroupfs driver,
the pod network from Debian's CNI plugins (bridge, host-local; loopback,
which containerd adds itself). The node is a network namespace of its own:
containerd, its bridge and the test registry live there, and the machine's
links stay as they were. The images come from the suite's registry, filled
by skopeo with the bundled busybox.

containerd writes cgroups (cgroupfs): on a host that keeps its controllers
on cgroup v1 those would be the system's v1 hierarchies, so this runs only
where cgroup v2 has them, in the test VM (`-m vm`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import PODMAN_NEEDS_V2, REPO
from fixtures.registry import Registry

from mini_engine.runtime import cgroups

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(shutil.which("containerd") is None, reason="containerd is not installed"),
    PODMAN_NEEDS_V2,  # containerd's cgroupfs driver, like podman's, needs the controllers on v2
]

PROTO = REPO / "third_party" / "cri-api"
HANDLER_CONFIG = REPO / "chapters" / "cluster" / "containerd-mini-runc.toml"
MINI_RUNC = str(REPO / ".venv" / "bin" / "mini-runc")
CNI_BIN = "/usr/lib/cni"
SUBNET = "10.99.0.0/24"
KUBEPODS = "mini-cri-kubepods"  # the kubelet's /kubepods, for this test's pods


# -- the client ---------------------------------------------------------------

@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, ModuleType]:
    """api_pb2 and api_pb2_grpc, generated from the vendored proto now (never committed)."""
    import grpc_tools
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("cri-api")
    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    code = protoc.main(["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}",
                        f"--grpc_python_out={out}", str(PROTO / "api.proto")])
    assert code == 0, "grpc_tools.protoc failed on third_party/cri-api/api.proto"
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")
    finally:
        sys.path.remove(str(out))


class CRI:
    """The two CRI services on containerd's socket: ``cri.RunPodSandbox(config=...)``."""

    def __init__(self, socket: str, api: tuple[ModuleType, ModuleType]) -> None:
        import grpc

        self.pb, grpc_api = api
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.runtime = grpc_api.RuntimeServiceStub(self.channel)
        self.images = grpc_api.ImageServiceStub(self.channel)

    def __getattr__(self, name: str) -> Any:
        request = getattr(self.pb, f"{name}Request")
        stub = self.runtime if hasattr(self.runtime, name) else self.images
        method = getattr(stub, name)
        return lambda **fields: method(request(**fields), timeout=300)


# -- the node: a network namespace with containerd and a registry in it -------

@dataclass
class Node:
    cri: CRI
    pb: ModuleType
    base: Path
    netns: str
    ctr: list[str]
    image: str
    config: str  # the config.toml containerd runs with


def busybox_layout(work: Path, rootfs: str) -> Path:
    """An OCI layout made by umoci: the bundled busybox, as `busybox` and as a `pause` whose
    command waits forever (the sandbox's own container, kubernetes' pause image)."""
    layout = work / "layout"

    def umoci(*args: str) -> None:
        subprocess.run(["umoci", *args], check=True, capture_output=True)

    umoci("init", "--layout", str(layout))
    umoci("new", "--image", f"{layout}:busybox")
    umoci("unpack", "--image", f"{layout}:busybox", str(work / "bundle"))
    shutil.copytree(rootfs, work / "bundle" / "rootfs", symlinks=True, dirs_exist_ok=True)
    umoci("repack", "--image", f"{layout}:busybox", str(work / "bundle"))
    shutil.rmtree(work / "bundle")
    # No PATH, no command found: runc looks the command up in the image's PATH.
    umoci("config", "--image", f"{layout}:busybox", "--config.cmd", "sh",
          "--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    umoci("config", "--image", f"{layout}:busybox", "--tag", "pause", "--config.cmd", "sleep",
          "--config.cmd", "2147483647")
    return layout


def containerd_config(base: Path, registry: str) -> str:
    """The chapter's handler config, with this node's own parts around it."""
    handler = HANDLER_CONFIG.read_text()
    assert handler.count('BinaryName = "/usr/local/bin/mini-runc"') == 1
    handler = handler.replace("/usr/local/bin/mini-runc", MINI_RUNC)
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""root = "{base}/root"
state = "{base}/state"
{handler}
[grpc]
  address = "{base}/containerd.sock"

[{cri}]
  sandbox_image = "{registry}/cri/pause:1"
  [{cri}.containerd]
    default_runtime_name = "runc"
  [{cri}.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [{cri}.containerd.runtimes.runc.options]
      BinaryName = "{shutil.which("runc")}"
      SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{base}/net.d"
  [{cri}.registry.mirrors."{registry}"]
    endpoint = ["http://{registry}"]
"""


def cni_config(base: Path) -> dict[str, Any]:
    """A bridge for the pods, addresses from host-local (leases kept in the node's directory)."""
    return {"cniVersion": "0.4.0", "name": "mini-cri", "plugins": [
        {"type": "bridge", "bridge": "cri0", "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]],
                  "dataDir": str(base / "cni-leases")}}]}


@pytest.fixture(scope="module")
def node(api: tuple[ModuleType, ModuleType], engine_roots: tuple[Path, Path],
         request: pytest.FixtureRequest) -> Iterator[Node]:
    from mini_engine.images import busybox
    from mini_engine.paths import Paths

    base = Path(tempfile.mkdtemp(prefix="mini-engine-cri-", dir="/run"))
    netns = str(base / "netns")
    daemon: subprocess.Popen[bytes] | None = None
    registry: Registry | None = None
    try:
        Path(netns).touch()
        subprocess.run(["unshare", f"--net={netns}", "ip", "link", "set", "lo", "up"], check=True)
        (base / "registry").mkdir()
        registry = Registry(base / "registry", netns=netns)
        rootfs = busybox.image(Paths(str(engine_roots[0]), str(engine_roots[1]))).rootfs
        layout = busybox_layout(base, rootfs)
        registry.push(f"oci:{layout}:busybox", "cri/busybox:1")
        registry.push(f"oci:{layout}:pause", "cri/pause:1")
        (base / "net.d").mkdir()
        (base / "net.d" / "10-mini-cri.conflist").write_text(json.dumps(cni_config(base)))
        config = containerd_config(base, registry.host)
        (base / "config.toml").write_text(config)
        with open(base / "containerd.log", "wb") as log:
            daemon = subprocess.Popen(["nsenter", f"--net={netns}", "containerd", "--config",
                                       str(base / "config.toml")], stdout=log, stderr=subprocess.STDOUT)
        sock = base / "containerd.sock"
        ctr = ["ctr", "--address", str(sock), "--namespace", "k8s.io"]
        for _ in range(600):
            if subprocess.run([*ctr, "version"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        cri = CRI(str(sock), api)
        yield Node(cri, api[0], base, netns, ctr, f"{registry.host}/cri/busybox:1", config)
        cri.channel.close()
    finally:
        if request.session.testsfailed:  # what containerd said, for the one reading a VM's output
            print((base / "containerd.log").read_text()[-6000:], file=sys.__stderr__)
        if daemon:
            daemon.terminate()
            daemon.wait(timeout=60)
        if registry:
            registry.stop()
        subprocess.run(["umount", "-R", "-l", str(base)], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)
        # The kubelet's pod cgroups, even a failed test's: a cgroup goes with rmdir, deepest first.
        for directory, _, _ in os.walk(Path(cgroups.mount_point()) / KUBEPODS, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(directory)


# -- what the kubelet asks ------------------------------------------------------

def sandbox_config(node: Node, name: str, uid: str) -> Any:
    pb = node.pb
    (node.base / "logs" / uid).mkdir(parents=True)
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="default", attempt=0),
        hostname=name, log_directory=str(node.base / "logs" / uid),
        # cgroupfs: the kubelet names the pod's cgroup; the runtime makes the containers' below it.
        linux=pb.LinuxPodSandboxConfig(cgroup_parent=f"/{KUBEPODS}/pod{uid}"))


def container_config(node: Node, name: str, command: list[str], memory: int = 0, pid: str = "CONTAINER") -> Any:
    pb = node.pb
    # The kubelet always says which namespaces a container shares with its pod:
    # network and IPC the pod's (POD), PID its own (CONTAINER) unless the pod
    # has shareProcessNamespace. (Unsaid, proto3's zero, POD, would share all.)
    namespaces = pb.NamespaceOption(network=pb.POD, ipc=pb.POD, pid=getattr(pb, pid))
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name, attempt=0), image=pb.ImageSpec(image=node.image),
        command=command, log_path=f"{name}.log",
        linux=pb.LinuxContainerConfig(
            resources=pb.LinuxContainerResources(memory_limit_in_bytes=memory),
            security_context=pb.LinuxContainerSecurityContext(namespace_options=namespaces)))


def wait_exited(node: Node, cid: str, seconds: float = 300) -> Any:
    for _ in range(int(seconds * 10)):
        status = node.cri.ContainerStatus(container_id=cid).status
        if status.state == node.pb.CONTAINER_EXITED:
            return status
        time.sleep(0.1)
    raise AssertionError(f"container {cid} did not exit in {seconds} s")


def exec_until(node: Node, cid: str, cmd: list[str], seconds: float = 120) -> Any:
    """ExecSync, again until it succeeds: a server in the pod may still be starting."""
    for _ in range(int(seconds)):
        answer = node.cri.ExecSync(container_id=cid, cmd=cmd, timeout=60)
        if answer.exit_code == 0:
            return answer
        time.sleep(1)
    return answer


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) (stdout|stderr) ([FP]) (.*)$")


def log_lines(path: Path) -> list[tuple[str, str, str]]:
    """The CRI log format: TIMESTAMP STREAM TAG MESSAGE per line (F: full line, P: partial)."""
    out = []
    for line in path.read_text().splitlines():
        match = LOG_LINE.match(line)
        assert match, f"not a CRI log line: {line!r}"
        out.append(match.group(3, 4, 5))
    return out


def leftovers(node: Node, pod_cgroup: Path) -> dict[str, Any]:
    """What a removed pod could leave: tasks, containers, cgroups, namespaces, mounts."""
    tasks = subprocess.run([*node.ctr, "tasks", "ls", "-q"], capture_output=True, text=True).stdout.split()
    containers = subprocess.run([*node.ctr, "containers", "ls", "-q"], capture_output=True,
                                text=True).stdout.split()
    netns = [n for n in os.listdir("/run/netns") if n.startswith("cni-")] if os.path.isdir("/run/netns") else []
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f
                  if "/netns/cni-" in line or f"{node.base}/state" in line or f"{node.base}/root" in line]
    cgroups_left = [d for d, _, _ in os.walk(pod_cgroup)] if pod_cgroup.exists() else []
    return {"tasks": tasks, "containers": containers, "netns": netns, "mounts": mounts,
            "cgroups": cgroups_left[1:]}  # the pod's own cgroup is the kubelet's to remove


@pytest.fixture
def pods(node: Node) -> Iterator[list[str]]:
    """The pods a test runs; whatever a failed test left of them is removed after it.
    (StopPodSandbox and RemovePodSandbox are idempotent: the kubelet calls them again.)"""
    made: list[str] = []
    yield made
    for pod in made:
        with contextlib.suppress(Exception):
            node.cri.StopPodSandbox(pod_sandbox_id=pod)
            node.cri.RemovePodSandbox(pod_sandbox_id=pod)


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("handler", ["mini-runc", "runc"])
def test_a_pod_as_the_kubelet_runs_it(node: Node, pods: list[str], handler: str) -> None:
    cri, pb = node.cri, node.pb
    uid = uuid.uuid4().hex[:12]
    sandbox = sandbox_config(node, f"web-{handler}", uid)
    pod = cri.RunPodSandbox(config=sandbox, runtime_handler=handler).pod_sandbox_id
    pods.append(pod)
    pod_status = cri.PodSandboxStatus(pod_sandbox_id=pod).status
    image_ref = cri.PullImage(image=pb.ImageSpec(image=node.image), sandbox_config=sandbox).image_ref

    def start(name: str, command: list[str], memory: int = 0, pid: str = "CONTAINER") -> str:
        config = container_config(node, name, command, memory, pid)
        cid = cri.CreateContainer(pod_sandbox_id=pod, config=config, sandbox_config=sandbox).container_id
        cri.StartContainer(container_id=cid)
        return cid

    web = start("web", ["sh", "-c", "mkdir /www && echo hello from web > /www/index.html && "
                        "exec httpd -f -p 8080 -h /www"], memory=64 << 20)
    # The client shares the pod's PID namespace (shareProcessNamespace: the
    # runtime joins the pause container's by path); it prints what it finds
    # in /tmp/say, so that a line reaches its log at a time of our choosing.
    client = start("client", ["sh", "-c", "echo to-stdout; echo to-stderr >&2; "
                              "while sleep 1; do [ -e /tmp/say ] && cat /tmp/say && rm /tmp/say; done"],
                   pid="POD")

    # Two containers of one pod share its network namespace: localhost is the pod's.
    fetched = exec_until(node, client, ["wget", "-q", "-O", "-", "http://localhost:8080/"])
    address = cri.ExecSync(container_id=client, cmd=["ip", "-4", "-o", "addr", "show", "eth0"], timeout=60)
    execd = cri.ExecSync(container_id=web, cmd=["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=60)
    pid1 = [cri.ExecSync(container_id=cid, cmd=["cat", "/proc/1/cmdline"], timeout=60).stdout
            for cid in (web, client)]
    web_status = cri.ContainerStatus(container_id=web).status
    pod_cgroup = Path(cgroups.mount_point()) / KUBEPODS / f"pod{uid}"
    memory_max = (pod_cgroup / web / "memory.max").read_text()
    # The kubelet resizes a running container: `mini-runc update --resources -`.
    cri.UpdateContainerResources(container_id=web,
                                 linux=pb.LinuxContainerResources(memory_limit_in_bytes=96 << 20))
    resized = (pod_cgroup / web / "memory.max").read_text()
    # containerd reads the meters itself, from the cgroup its shim found the container in.
    stats = cri.ContainerStats(container_id=web).stats

    # Logs: the file the kubelet named, in the CRI format; then rotated, as
    # the kubelet does: rename, ReopenContainerLog, and the next line goes
    # to a new file. What the container's own process prints is logged (an
    # exec's output goes back to the one who asked).
    log = Path(sandbox.log_directory) / "client.log"
    for _ in range(100):
        if log.exists() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    before = sorted(log_lines(log))
    log.rename(log.with_suffix(".log.1"))
    cri.ReopenContainerLog(container_id=client)
    said = cri.ExecSync(container_id=client, cmd=["sh", "-c", "echo after-reopen > /tmp/say"], timeout=60)
    for _ in range(300):
        if log.exists() and log.read_text():
            break
        time.sleep(0.1)
    after = log_lines(log)

    # Over its memory limit, the kernel's OOM killer ends the container;
    # the shim sees memory.events and containerd reports it.
    hog = start("hog", ["sh", "-c", "x=0123456789; while :; do x=$x$x; done"], memory=16 << 20)
    hog_status = wait_exited(node, hog)

    present = leftovers(node, pod_cgroup)  # what the check below must find gone
    for cid in (web, client, hog):
        cri.StopContainer(container_id=cid, timeout=1)
    stopped = [(s.state, s.exit_code) for s in (cri.ContainerStatus(container_id=cid).status
                                                 for cid in (web, client))]
    for cid in (web, client, hog):
        cri.RemoveContainer(container_id=cid)
    cri.StopPodSandbox(pod_sandbox_id=pod)
    cri.RemovePodSandbox(pod_sandbox_id=pod)
    left = leftovers(node, pod_cgroup)
    with contextlib.suppress(OSError):
        pod_cgroup.rmdir()  # the kubelet's part: the pod's cgroup, now empty
    images = [i.id for i in cri.ListImages().images]

    assert pod_status.state == pb.SANDBOX_READY and pod_status.network.ip.startswith("10.99.0.")
    assert image_ref in images
    assert (fetched.exit_code, fetched.stdout) == (0, b"hello from web\n")
    assert f"inet {pod_status.network.ip}/24" in address.stdout.decode()
    assert (execd.exit_code, execd.stdout, execd.stderr) == (3, b"out\n", b"err\n")
    # PID 1 of web's own PID namespace is httpd; the client's is the pod's pause.
    assert pid1 == [b"httpd\0-f\0-p\08080\0-h\0/www\0", b"sleep\x002147483647\0"]
    assert web_status.state == pb.CONTAINER_RUNNING
    assert (memory_max, resized) == (f"{64 << 20}\n", f"{96 << 20}\n")
    assert stats.memory.working_set_bytes.value > 0 and stats.cpu.usage_core_nano_seconds.value > 0
    assert before == [("stderr", "F", "to-stderr"), ("stdout", "F", "to-stdout")]
    assert said.exit_code == 0 and after == [("stdout", "F", "after-reopen")]
    assert (hog_status.reason, hog_status.exit_code) == ("OOMKilled", 137)
    # httpd, PID 1 of its namespace, has no SIGTERM handler: the kernel keeps
    # that signal from it, and the SIGKILL a second later ends it (128 + 9).
    # The client's shell is not PID 1 (the pause is): SIGTERM ends it (128 + 15).
    assert stopped == [(pb.CONTAINER_EXITED, 137), (pb.CONTAINER_EXITED, 143)]
    assert all(present.values()), present
    assert left == {"tasks": [], "containers": [], "netns": [], "mounts": [], "cgroups": []}
