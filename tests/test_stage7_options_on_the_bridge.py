"""Stage 7 meets the options of the other stages: each one on the default bridge.

The suite's engine runs with ``MINI_ENGINE_NETWORK=none``; a learner's runs
on the bridge, where the network namespace is the engine's (made before the
container's user namespace), /etc/hostname, /etc/hosts and /etc/resolv.conf
are bind mounts, and capabilities meet a real interface. So every option that
touches those gets a run here, in the playground namespaces of
tests/fixtures/netlab.py, and must still leave the container its address.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.netlab import NetLab

pytestmark = [pytest.mark.stage(7), pytest.mark.root]

ADDRESS = "ip -o -4 addr show eth0 | awk '{print $4}'"
RO_SYS = "awk '$5 ~ \"^/sys\" {print substr($6, 1, 3)}' /proc/self/mountinfo | sort -u; touch /sys/x 2>&1"


@pytest.mark.parametrize("options,script,expected", [
    # The defaults: a raw socket (CAP_NET_RAW) but no configuring of interfaces (CAP_NET_ADMIN).
    ([], "ping -c1 -W5 10.88.0.1 >/dev/null && echo pinged; ip link set eth0 mtu 1300 2>&1",
     ["pinged", "ip: SIOCSIFMTU: Operation not permitted"]),
    (["--cap-drop", "NET_RAW"], "ping -c1 -W5 10.88.0.1 2>&1 | tail -1",
     ["ping: permission denied (are you root?)"]),
    (["--cap-add", "NET_ADMIN"], "ip link set eth0 mtu 1300 && cat /sys/class/net/eth0/mtu", ["1300"]),
    (["--privileged"], "ip link set eth0 mtu 1300 && cat /sys/class/net/eth0/mtu", ["1300"]),
    (["--security-opt", "seccomp=unconfined"], "grep Seccomp: /proc/self/status", ["Seccomp: 0"]),
    # The name files are bind mounts of files of root's: readable by every user of the container.
    (["-u", "65534"], "id -u; cat /etc/hosts /etc/resolv.conf /etc/hostname >/dev/null && echo read",
     ["65534", "read"]),
    # Mount points for them come from the init layer: a read-only root needs none made.
    (["--read-only"], "touch /x 2>&1; grep -c nameserver /etc/resolv.conf",
     ["touch: /x: Read-only file system", "1"]),
    (["--init"], "tr '\\0' '\\n' < /proc/1/cmdline | head -1", ["/run/mini-engine-init"]),
    (["--time-offset", "86400"], "awk '$1 >= 86400 {print \"a day later\"}' /proc/uptime", ["a day later"]),
    pytest.param(["-v", "{tmp}:/data"], "echo kept > /data/file && cat /data/file", ["kept"],
                 marks=pytest.mark.stage(8)),  # -v is stage 8's
    # The user namespace comes after the engine's network namespace, which it cannot
    # own: no sysfs of its own, the host's /sys bound read-only, all the way down.
    (["--userns", "auto"], f"cat /proc/self/uid_map; {RO_SYS}",
     ["0 100000 65536", "ro,", "touch: /sys/x: Read-only file system"]),
    (["--userns", "auto", "-u", "65534", "--read-only"],
     "id -u; cat /etc/hosts /etc/resolv.conf /etc/hostname >/dev/null && echo read; touch /x 2>&1",
     ["65534", "read", "touch: /x: Read-only file system"]),
], ids=["defaults", "cap-drop", "cap-add", "privileged", "seccomp", "user", "read-only", "init",
        "time-offset", "volume", "userns", "userns-user-read-only"])
def test_an_option_on_the_default_bridge(net: NetLab, tmp_path: Path, options: list[str], script: str,
                                         expected: list[str]) -> None:
    options = [option.format(tmp=tmp_path) for option in options]
    result = net.run("run", "--rm", *options, "busybox", "sh", "-c", f"{script}; {ADDRESS}")
    assert result.returncode == 0, result.stderr
    *lines, address = result.stdout.splitlines()
    assert [" ".join(line.split()) for line in lines] == expected  # uid_map's columns: one space
    assert address.startswith("10.88.0.") and address.endswith("/16")
    if "-v" in options:
        assert (tmp_path / "file").read_text() == "kept\n"


def test_userns_binds_the_hosts_sys_only_where_it_does_not_own_the_network(net: NetLab) -> None:
    """--network host: the host's network namespace, owned by the host's user namespace too;
    --network none: one made after the user namespace, so its own, and a sysfs of its own."""
    own = net.run("run", "--rm", "--userns", "auto", "--network", "none", "busybox", "ls", "/sys/class/net")
    assert (own.returncode, own.stdout) == (0, "lo\n"), own.stderr
    result = net.run("run", "--rm", "--userns", "auto", "--network", "host", "busybox", "sh", "-c", RO_SYS)
    # touch's exit status: 1
    assert (result.returncode, result.stdout) == (1, "ro,\ntouch: /sys/x: Read-only file system\n"), \
        result.stderr


@pytest.mark.stage(8)  # run -d: the detached container and its log are stage 8's
def test_exec_joins_a_userns_container_on_the_default_bridge(net: NetLab) -> None:
    """The container's network namespace is the engine's, owned by the host's user
    namespace: exec joins it before the container's user namespace, while it still
    has the host's capabilities (after, setns would be refused: EPERM)."""
    started = net.run("run", "-d", "--userns", "auto", "--name", "in-userns", "busybox", "sleep", "60")
    assert started.returncode == 0, started.stderr
    try:
        result = net.run("exec", "in-userns", "sh", "-c", f"cat /proc/self/uid_map; {ADDRESS}")
        assert result.returncode == 0, result.stderr
        uid_map, address = result.stdout.splitlines()
        assert " ".join(uid_map.split()) == "0 100000 65536"
        assert address.startswith("10.88.0.") and address.endswith("/16")
    finally:
        net.run("rm", "-f", "in-userns")
