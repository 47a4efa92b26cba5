"""Stage 4: the root filesystem is an overlay; writes go to the container's upper dir."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import Engine, children

from mini_engine.containers import overlay

pytestmark = [pytest.mark.stage(4), pytest.mark.root]


def _last_id(engine: Engine) -> str:
    records = json.loads(engine("ps", "-a", "--format", "json").stdout)
    return max(records, key=lambda r: r["Created"])["Id"]


def test_root_is_an_overlay_of_the_bundled_image(engine: Engine) -> None:
    proc = engine.popen("--stage", "4", "run", "--rm", "-i", "busybox", "sh", "-c",
                        "echo ready; grep ' / / ' /proc/self/mountinfo; read x",
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    inside = proc.stdout.readline()
    # From the host: the engine mounted it on the bundle's rootfs, before the runtime ran.
    bundle = engine.root / "containers"
    with open("/proc/self/mountinfo") as f:
        host = [line for line in f if str(bundle) in line.split()[4]]
    pid = children(proc.pid)[0]
    proc.communicate("\n", timeout=60)
    assert " - overlay overlay " in inside
    assert len(host) == 1 and host[0].split()[4].endswith("/rootfs"), host
    options = host[0].split(" - ")[1]
    lower = str(engine.root / "bundled" / "busybox" / "rootfs")
    assert f"lowerdir={lower}," in options and "upperdir=" in options and "workdir=" in options
    assert pid > 0


def test_copy_on_write_keeps_the_layer_and_each_container_to_itself(engine: Engine) -> None:
    hosts = engine.root / "bundled" / "busybox" / "rootfs" / "etc" / "hosts"
    before = hosts.read_bytes()
    first = engine("--stage", "4", "run", "busybox", "sh", "-c", "echo 10.0.0.1 mine >> /etc/hosts")
    assert first.returncode == 0, first.stderr
    container = _last_id(engine)
    try:
        # The layer is untouched; the change is a copied-up file in upper.
        assert hosts.read_bytes() == before
        upper = engine.root / "containers" / container / "upper" / "etc" / "hosts"
        assert upper.read_bytes() == before + b"10.0.0.1 mine\n"
        second = engine("--stage", "4", "run", "--rm", "busybox", "cat", "/etc/hosts")
        assert second.stdout.encode() == before
        # The overlay went with the container's end; upper stays until rm.
        assert not os.path.ismount(engine.root / "containers" / container / "rootfs")
    finally:
        assert engine("rm", container).returncode == 0
    assert not (engine.root / "containers" / container).exists()


def test_diff_lists_added_changed_and_deleted(engine: Engine) -> None:
    script = ("touch /tmp/new && rm /etc/hosts && echo more >> /etc/passwd && mkdir -p /srv/a "
              "&& rm -rf /home && rm -rf /var && mkdir /var && touch /var/only")
    result = engine("--stage", "4", "run", "busybox", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    container = _last_id(engine)
    try:
        out = engine("diff", container)
        assert out.returncode == 0, out.stderr
        # /var was removed and made again: an opaque directory in upper, so
        # what was below it (var/tmp) is deleted.
        assert out.stdout.splitlines() == [
            "C /etc", "D /etc/hosts", "C /etc/passwd", "D /home", "A /srv", "A /srv/a",
            "C /tmp", "A /tmp/new", "C /var", "A /var/only", "D /var/tmp",
        ]
        upper = engine.root / "containers" / container / "upper"
        st = os.lstat(upper / "etc" / "hosts")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0  # the kernel's whiteout
        assert os.getxattr(upper / "var", "trusted.overlay.opaque") == b"y"
    finally:
        engine("rm", container)


def test_diff_needs_an_overlay(engine: Engine) -> None:
    assert engine("--stage", "3", "run", "busybox", "true").returncode == 0
    container = _last_id(engine)
    try:
        out = engine("diff", container)
        assert out.returncode == 125
        assert "diff needs stage 4" in out.stderr
    finally:
        engine("rm", container)


def test_many_lower_layers_fit_one_page_of_options(tmp_path: Path) -> None:
    """Forty-five layers named by absolute paths pass the kernel's page of
    mount options; by short relative links (as the store names them) they fit."""
    store = tmp_path / ("a-long-store-directory-name-" * 3)
    links = []
    for i in range(45):
        layer = store / "layers" / f"{i:064x}" / "diff"
        (layer / "layers").mkdir(parents=True)
        (layer / "layers" / f"{i:02d}").write_text(f"{i}\n")
        (store / "l").mkdir(exist_ok=True)
        os.symlink(f"../layers/{i:064x}/diff", store / "l" / f"{i:010x}")
        links.append(f"l/{i:010x}")
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    absolute = [str(store / "layers" / f"{i:064x}" / "diff") for i in range(45)]
    with pytest.raises(Exception, match="the kernel takes at most"):
        overlay.mount(absolute[::-1], str(tmp_path / "upper"), str(tmp_path / "work"),
                      str(tmp_path / "merged"), cwd=str(store))
    overlay.mount(links[::-1], str(tmp_path / "upper"), str(tmp_path / "work"),
                  str(tmp_path / "merged"), cwd=str(store))
    try:
        assert sorted(os.listdir(tmp_path / "merged" / "layers")) == [f"{i:02d}" for i in range(45)]
    finally:
        overlay.unmount(str(tmp_path / "merged"))
    assert not os.path.ismount(tmp_path / "merged")
