"""The command line: stages, doctor, spec, ps, rm, and python -m."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import Engine

from mini_engine.stages import STAGES

pytestmark = pytest.mark.stage(0)


def test_stages_lists_the_ladder(engine: Engine) -> None:
    lines = engine("stages").stdout.splitlines()
    assert lines[0].split() == ["N", "SLUG", "BUILT", "CHAPTER", "LAB"]
    stages = [line for line in lines[1:] if not line.startswith(" ")]
    assert [line.split()[:2] for line in stages] == [[str(s.number), s.slug] for s in STAGES]
    assert lines[3].split()[3:] == ["chapters/02-namespaces.md", "labs/02-namespaces"]
    # Stage 6 is told in two chapters: the second on a line of its own, in the CHAPTER column.
    second = lines[lines.index(next(line for line in lines if line.startswith("6 "))) + 1]
    assert second.split() == ["chapters/06-userns.md"]
    assert second.index("chapters/") == lines[0].index("CHAPTER")


def test_doctor_reports_what_the_kernel_has(engine: Engine) -> None:
    report = json.loads(engine("doctor", "--json").stdout)
    features = {f["name"]: f["ok"] for f in report["features"]}
    for kind in ("pid", "mount", "network", "uts", "ipc", "user", "cgroup", "time"):
        # We are running namespaced containers in these very tests.
        assert features[f"namespace {kind}"] is True
    with open("/proc/self/mountinfo") as f:
        v2 = [line.split()[4] for line in f if " - cgroup2 " in line]
    with open(os.path.join(v2[0], "cgroup.controllers")) as f:
        controllers = f.read().split()
    for controller in ("memory", "cpu", "pids"):
        assert features[f"cgroup v2 {controller}"] == (controller in controllers)
    works = {s["slug"]: s["works"] for s in report["stages"]}
    assert works["namespaces"] == "yes"
    # Stage 3 runs without the controllers, minus their limits.
    assert works["cgroups"] == ("yes" if {"memory", "cpu", "pids", "io"} <= set(controllers)
                                else "partly")
    assert works["overlayfs"] == "yes" and works["images"] == "yes"
    assert works["security"] == works["networking"] == works["real-images"] == "yes"


def test_doctor_text_names_each_stage(engine: Engine) -> None:
    out = engine("doctor").stdout
    for stage in STAGES:
        assert f"{stage.number} {stage.slug}" in out


@pytest.mark.parametrize("stage, keys", [
    ("0", ["ociVersion", "process"]),
    ("1", ["ociVersion", "process", "root"]),
    ("2", ["hostname", "linux", "mounts", "ociVersion", "process", "root"]),
])
def test_spec_grows_with_the_stage(engine: Engine, stage: str, keys: list[str]) -> None:
    spec = json.loads(engine("--stage", stage, "spec", "busybox", "echo", "hi").stdout)
    assert sorted(spec) == keys
    assert spec["process"]["args"] == ["echo", "hi"]


@pytest.mark.stage(8)  # no --stage: the top stage, all of it written
def test_spec_of_a_run(engine: Engine) -> None:
    spec = json.loads(engine("spec", "-t", "--hostname", "h", "-e", "A=1", "-w", "/srv",
                             "--userns", "auto", "busybox").stdout)
    assert spec["process"]["args"] == ["sh"]  # the image's Cmd
    assert spec["process"]["cwd"] == "/srv" and spec["process"]["terminal"] is True
    assert {"A=1", "TERM=xterm", "HOSTNAME=h"} <= set(spec["process"]["env"])
    assert [n["type"] for n in spec["linux"]["namespaces"]] == [
        "pid", "network", "ipc", "uts", "mount", "cgroup", "user"]
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]


@pytest.mark.stage(8)  # no --stage: the top stage, all of it written
def test_the_bundle_on_disk_is_what_spec_prints(engine: Engine) -> None:
    result = engine("run", "--hostname", "kept", "busybox", "true")
    assert result.returncode == 0
    cid = next(c for c in engine.containers()
           if json.loads((engine.root / "containers" / c / "config.json").read_text())
           .get("hostname") == "kept")
    bundle = engine.root / "containers" / cid
    config = json.loads((bundle / "config.json").read_text())
    assert config["root"] == {"path": "rootfs", "readonly": False}
    # From stage 4 on, rootfs/ is where the overlay was mounted while the
    # container ran; the container's writes (none here) stay in upper/.
    assert (bundle / "rootfs").is_dir() and not os.path.ismount(bundle / "rootfs")
    assert list((bundle / "upper").iterdir()) == []
    ps = json.loads(engine("ps", "-a", "--format", "json").stdout)
    mine = next(r for r in ps if r["Id"] == cid)
    assert mine["State"]["Status"] == "exited" and mine["State"]["ExitCode"] == 0
    assert engine("ps", "-a").stdout.count(cid[:12]) == 1 and cid[:12] not in engine("ps").stdout
    assert engine("rm", cid[:12]).stdout == f"{cid}\n"
    assert not bundle.exists()


def test_rm_of_an_unknown_container(engine: Engine) -> None:
    result = engine("rm", "feedface")
    assert (result.returncode, result.stderr) == (1, 'mini-engine: container "feedface" does not exist\n')


def test_python_dash_m_is_the_same_command() -> None:
    result = subprocess.run([sys.executable, "-m", "mini_engine", "--version"],
                            capture_output=True, text=True)
    assert result.stdout == "mini-engine 0.1.0\n"


@pytest.mark.stage(8)
def test_ctrl_c_ends_a_stream_even_when_the_caller_ignored_it(engine: Engine) -> None:
    """A shell's & starts the engine with SIGINT ignored, which Python keeps; the engine
    takes it back, as docker's client does, so Ctrl-C still ends events (130)."""
    import signal

    from mini_engine.labkit import wait_until

    def sigint_ignored(pid: int) -> bool:
        with open(f"/proc/{pid}/status") as f:
            mask = next(line.split()[1] for line in f if line.startswith("SigIgn:"))
        return bool(int(mask, 16) & (1 << (signal.SIGINT - 1)))

    proc = subprocess.Popen(engine.argv("events"), env=engine.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert wait_until(lambda: not sigint_ignored(proc.pid)), "the engine kept SIGINT ignored"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.wait()
