"""Stage 9: mini-engine build, judged by the layers it writes, the configs, and what the images run.

Every test builds real Containerfiles with real RUN containers on the
engine's own runtime (network none, as the suite sets), then reads the
layer tars from the store as any registry or runtime would, or runs the
image.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
from conftest import Engine

pytestmark = [pytest.mark.stage(9), pytest.mark.root]


def context(tmp_path: Path, containerfile: str, **files: str | bytes) -> Path:
    directory = tmp_path / "ctx"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Containerfile").write_text(containerfile)
    for name, content in files.items():
        path = directory / name.replace("__", "/").replace("_DOT_", ".")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return directory


def build(engine: Engine, directory: Path, *args: str, env: dict[str, str] | None = None,
          ok: bool = True) -> tuple[str, str, int]:
    result = engine("build", *args, str(directory), timeout=180, env={**engine.env, **(env or {})})
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, result.stderr, result.returncode


def image_id(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]


def inspect(engine: Engine, name: str) -> dict:
    result = engine("inspect", name)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]


def config_of(engine: Engine, name: str) -> dict:
    record = inspect(engine, name)
    return json.loads((engine.root / "blobs" / "sha256" / record["Id"][7:]).read_bytes())


def layer_members(engine: Engine, name: str, index: int) -> dict[str, tarfile.TarInfo]:
    """The members of the image's layer ``index`` (negative: from the top), read from its blob."""
    entry = inspect(engine, name)["Layers"][index]
    data = (engine.root / "blobs" / "sha256" / entry["digest"][7:]).read_bytes()
    if entry["mediaType"].endswith("+gzip"):
        data = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def run(engine: Engine, *args: str) -> str:
    result = engine("run", "--rm", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def rmi(engine: Engine, *names: str) -> None:
    engine("rmi", "-f", *names)
    engine("image", "prune")


def store_listing(engine: Engine) -> dict[str, list[str]]:
    return {part: sorted(os.listdir(engine.root / part)) if (engine.root / part).exists() else []
            for part in ("layers", "blobs/sha256", "images", "containers", "l")}


def test_a_build_gives_the_config_and_layers_its_containerfile_says(engine: Engine, tmp_path: Path) -> None:
    directory = context(tmp_path, """\
# A comment, then a continued line
FROM busybox
ARG GREETING=hello
ENV A=1 \\
    B="two words"
RUN echo "$GREETING $A $B" > /greeting && mkdir /data && ln /greeting /data/hard \\
 && chmod 4755 /data && cp /bin/busybox /data/suid && chmod 4755 /data/suid
RUN rm /bin/vi
WORKDIR /srv/app
COPY --chown=1000:1001 file.txt ./
USER 1000
ENTRYPOINT ["sh", "-c"]
CMD ["cat /greeting; id -u; pwd"]
EXPOSE 8080 53/udp
LABEL org.example.a=yes "org.example.b"="two words"
VOLUME /data
STOPSIGNAL SIGINT
""", file_DOT_txt="content\n")
    out, _, _ = build(engine, directory, "-t", "test/basic")
    try:
        assert "STEP 1/14: FROM busybox" in out
        assert run(engine, "test/basic") == "hello 1 two words\n1000\n/srv/app\n"
        config = config_of(engine, "test/basic")
        image = config["config"]
        assert image["Env"][-2:] == ["A=1", "B=two words"]
        assert image["Entrypoint"] == ["sh", "-c"] and image["Cmd"] == ["cat /greeting; id -u; pwd"]
        assert image["WorkingDir"] == "/srv/app" and image["User"] == "1000"
        assert image["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
        assert image["Labels"]["org.example.a"] == "yes" and image["Labels"]["org.example.b"] == "two words"
        assert image["Volumes"] == {"/data": {}} and image["StopSignal"] == "SIGINT"
        # One layer per RUN, WORKDIR (a new directory) and COPY on top of busybox's one;
        # the history has a line per step, the empty ones marked so.
        assert len(config["rootfs"]["diff_ids"]) == 5
        history = config["history"]
        # The bundled busybox's config has no history: its layer gets a line, so that
        # every layer has one (buildah refuses to build on an image where some lack it).
        assert len([h for h in history if not h.get("empty_layer")]) == 5
        assert history[0]["created_by"] == "(a layer of the base image, with no history of its own)"
        assert history[-1]["created_by"] == "/bin/sh -c #(nop) STOPSIGNAL SIGINT"
        assert history[-1]["empty_layer"] is True
        assert any(h["created_by"].startswith("|1 GREETING=hello /bin/sh -c echo") for h in history)

        first = layer_members(engine, "test/basic", 1)
        # A second name of one file is a hard link to the first written (in name order), as tar writes it.
        assert first["data/hard"].isreg() and first["data/hard"].size == len("hello 1 two words\n")
        assert first["greeting"].type == tarfile.LNKTYPE and first["greeting"].linkname == "data/hard"
        assert first["data"].mode == 0o4755 and first["data/suid"].mode == 0o4755
        # rm of a file of the layer below: a whiteout.
        assert ".wh.vi" in {name.rpartition("/")[2] for name in layer_members(engine, "test/basic", 2)}
        assert "bin/.wh.vi" in layer_members(engine, "test/basic", 2)
        assert set(layer_members(engine, "test/basic", 3)) == {"srv", "srv/app"}
        copied = layer_members(engine, "test/basic", 4)["srv/app/file.txt"]
        assert (copied.uid, copied.gid, copied.mode) == (1000, 1001, 0o644)
        # /data is the image's VOLUME: an anonymous volume that starts as a copy of the
        # image's /data, setuid bits kept; /greeting, outside it, keeps its second name.
        listing = run(engine, "--entrypoint", "stat", "test/basic", "-c", "%a %u %h %n",
                      "/data/suid", "/greeting", "/srv/app/file.txt")
        assert listing == "4755 0 1 /data/suid\n644 0 2 /greeting\n644 1000 1 /srv/app/file.txt\n"
        gone = engine("run", "--rm", "--entrypoint", "ls", "test/basic", "/bin/vi")
        assert gone.returncode == 1 and "No such file" in gone.stderr + gone.stdout
    finally:
        rmi(engine, "test/basic")


def test_an_opaque_directory_and_a_whiteout_across_stages(engine: Engine, tmp_path: Path) -> None:
    directory = context(tmp_path, """\
FROM busybox AS base
RUN mkdir -p /opt/a /opt/b && echo 1 > /opt/a/one && echo 2 > /opt/b/two
FROM base AS second
RUN rm -rf /opt && mkdir /opt && echo 3 > /opt/three && rm /opt/three && echo 4 > /opt/four
FROM second
RUN rm /opt/four
""")
    build(engine, directory, "-t", "test/opaque")
    try:
        members = layer_members(engine, "test/opaque", 2)
        # /opt removed and made again: the kernel marks it opaque, the tar says so.
        assert "opt/.wh..wh..opq" in members and "opt/four" in members
        assert "opt/three" not in members and "opt/.wh.three" not in members
        assert set(layer_members(engine, "test/opaque", 3)) == {"opt", "opt/.wh.four"}
        assert run(engine, "test/opaque", "ls", "-A", "/opt") == ""
    finally:
        rmi(engine, "test/opaque")


def test_the_cache_hits_until_an_input_changes(engine: Engine, tmp_path: Path) -> None:
    directory = context(tmp_path, """\
FROM busybox
RUN echo one > /one
COPY file /file
RUN cat /file /one > /both
""", file="v1\n")
    out, _, _ = build(engine, directory, "-t", "test/cache")
    try:
        assert "Using cache" not in out
        first = inspect(engine, "test/cache")["Layers"]
        out, _, _ = build(engine, directory, "-t", "test/cache")
        assert out.count("--> Using cache") == 3
        assert inspect(engine, "test/cache")["Layers"] == first
        # Another content: COPY misses, and so does every step after it.
        (directory / "file").write_text("v2\n")
        os.utime(directory / "file", (1, 1))
        out, _, _ = build(engine, directory, "-t", "test/cache")
        assert out.count("--> Using cache") == 1
        assert out.index("--> Using cache") < out.index("COPY")
        assert run(engine, "test/cache", "cat", "/both") == "v2\none\n"
        # Only the time changed: a hit (the content decides, not the mtime).
        os.utime(directory / "file", (2, 2))
        out, _, _ = build(engine, directory, "-t", "test/cache")
        assert out.count("--> Using cache") == 3
        out, _, _ = build(engine, directory, "--no-cache", "-t", "test/cache")
        assert "Using cache" not in out
        # A build arg is an input too.
        (directory / "Containerfile").write_text("FROM busybox\nARG V=1\nRUN echo $V > /v\n")
        build(engine, directory, "-t", "test/cache")
        out, _, _ = build(engine, directory, "-t", "test/cache", "--build-arg", "V=2")
        assert "Using cache" not in out
        assert run(engine, "test/cache", "cat", "/v") == "2\n"
        # The image removed and its layers pruned: the cache misses (its entries name layers now gone).
        rmi(engine, "test/cache")
        out, _, _ = build(engine, directory, "-t", "test/cache", "--build-arg", "V=2")
        assert "Using cache" not in out
        assert run(engine, "test/cache", "cat", "/v") == "2\n"
    finally:
        rmi(engine, "test/cache")


def test_source_date_epoch_makes_the_same_image_twice(engine: Engine, tmp_path: Path) -> None:
    directory = context(tmp_path, "FROM busybox\nRUN echo hi > /hi && mkdir /d && touch /d/x\nCOPY f /f\n",
                        f="x\n")
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    first = image_id(build(engine, directory, "--no-cache", "-t", "test/repro", env=env)[0])
    second = image_id(build(engine, directory, "--no-cache", "-t", "test/repro", env=env)[0])
    try:
        assert first == second
        config = config_of(engine, "test/repro")
        assert config["created"] == "2023-11-14T22:13:20Z"
        members = layer_members(engine, "test/repro", 1)
        assert {m.mtime for m in members.values()} == {1700000000}
    finally:
        rmi(engine, "test/repro")


def test_multi_stage_copy_from_scratch_and_target(engine: Engine, tmp_path: Path) -> None:
    directory = context(tmp_path, """\
ARG BASE=busybox
FROM ${BASE} AS build
ARG WHO
RUN mkdir /out && echo "built for ${WHO:-nobody}" > /out/result && ln -s result /out/link
FROM scratch AS final
COPY --from=build /bin/busybox /bin/busybox
COPY --from=build /out/ /out/
COPY --from=0 /out/link /link
ENTRYPOINT ["/bin/busybox"]
CMD ["cat", "/out/result"]
FROM final AS extra
ENV EXTRA=1
""")
    build(engine, directory, "-t", "test/multi", "--target", "final", "--build-arg", "WHO=you")
    try:
        assert run(engine, "test/multi") == "built for you\n"
        assert run(engine, "test/multi", "readlink", "/out/link") == "result\n"
        config = config_of(engine, "test/multi")
        assert len(config["rootfs"]["diff_ids"]) == 3
        assert "EXTRA=1" not in (config["config"].get("Env") or [])
        # A symlink named as the source is followed, as BuildKit follows it;
        # inside a directory copied, it stays a symlink.
        link = layer_members(engine, "test/multi", 2)["link"]
        assert link.isreg() and run(engine, "test/multi", "cat", "/link") == "built for you\n"
    finally:
        rmi(engine, "test/multi")


def test_add_unpacks_a_local_archive_and_containerignore_leaves_files_out(engine: Engine,
                                                                          tmp_path: Path) -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("pkg/bin/tool")
        data = b"#!/bin/sh\necho tool\n"
        info.size, info.mode, info.uid = len(data), 0o755, 7
        tar.addfile(info, io.BytesIO(data))
    directory = context(tmp_path, """\
FROM busybox
ADD pkg.tar.gz /opt/
COPY . /ctx/
""", pkg_DOT_tar_DOT_gz=archive.getvalue(), keep="k\n", secret_DOT_key="s\n",
                        _DOT_containerignore="*.key\nsub\n!sub/wanted\n",
                        sub__unwanted="u\n", sub__wanted="w\n")
    build(engine, directory, "-t", "test/add")
    try:
        assert run(engine, "test/add", "/opt/pkg/bin/tool") == "tool\n"
        assert run(engine, "test/add", "stat", "-c", "%u %a", "/opt/pkg/bin/tool") == "7 755\n"
        listing = run(engine, "test/add", "find", "/ctx", "-type", "f").split()
        assert sorted(listing) == ["/ctx/.containerignore", "/ctx/Containerfile", "/ctx/keep",
                                   "/ctx/pkg.tar.gz", "/ctx/sub/wanted"]
    finally:
        rmi(engine, "test/add")


@pytest.mark.parametrize(("containerfile", "files", "message"), [
    ("FROM busybox\n\nFROB x\n", {}, "mini-engine: Containerfile:3: unknown instruction: FROB\n"),
    ("FROM busybox\nCOPY ../outside /x\n", {},
     "mini-engine: Containerfile:2: COPY: ../outside: outside the build context\n"),
    ("FROM busybox\nCOPY link /x\n", {"link": "@/etc"},
     "mini-engine: Containerfile:2: COPY: link: outside the build context (a symlink leads to /etc)\n"),
    ("FROM busybox\nCOPY missing /x\n", {},
     "mini-engine: Containerfile:2: COPY: missing: no such file or directory in the build context "
     "(or .containerignore leaves it out)\n"),
    ("FROM busybox AS a\nRUN true\nFROM nosuchstage\n", {},
     "mini-engine: Containerfile:3: FROM nosuchstage: image"),
    ("FROM busybox\nRUN echo partial > /partial && exit 3\n", {},
     "mini-engine: Containerfile:2: RUN echo partial > /partial && exit 3: exited with code 3\n"),
    ("FROM busybox\nRUN no-such-program\n", {},
     "mini-engine: Containerfile:2: RUN no-such-program: exited with code 127\n"),
])
def test_bad_input_exits_1_naming_the_line_and_leaves_nothing(engine: Engine, tmp_path: Path,
                                                              containerfile: str, files: dict[str, str],
                                                              message: str) -> None:
    directory = context(tmp_path, containerfile)
    for name, content in files.items():
        if content.startswith("@"):
            os.symlink(content[1:], directory / name)
    warm = context(tmp_path / "warm", "FROM busybox\n")
    build(engine, warm)  # the bundled busybox in the store before the listing
    engine("image", "prune")
    before = store_listing(engine)
    _, err, code = build(engine, directory, "--no-cache", "-t", "test/bad", ok=False)
    assert code == 1
    # The engine's one line last; before it, what a failing RUN wrote itself.
    ours = [line for line in err.splitlines() if line.startswith("mini-engine:")]
    assert len(ours) == 1 and err.endswith(ours[0] + "\n")
    assert ours[0].startswith(message.rstrip("\n")), err
    # No container, no layer, no blob, no image: the store is as it was.
    assert store_listing(engine) == before
    assert engine("inspect", "test/bad").returncode != 0


def test_build_errors_before_any_step(engine: Engine, tmp_path: Path) -> None:
    directory = context(tmp_path, "FROM busybox AS a\n")
    result = engine("--stage", "8", "build", str(directory))
    assert (result.returncode, result.stderr) == (
        125, "mini-engine: 'build' needs stage 9 or above (this is stage 8, real-images)\n")
    _, err, code = build(engine, directory, "--target", "b", ok=False)
    assert (code, err) == (1, "mini-engine: --target b: no stage of that name in Containerfile\n")
    result = engine("build", "--platform", "linux/s390x", str(directory))
    assert result.returncode == 125
    assert result.stderr.startswith("mini-engine: --platform linux/s390x: this engine builds for this "
                                    "machine only")
    _, err, code = build(engine, tmp_path / "nowhere", ok=False)
    assert (code, err) == (1, f"mini-engine: build context {tmp_path}/nowhere: no such directory\n")
    _, err, code = build(engine, directory, "-f", str(tmp_path / "none"), ok=False)
    assert (code, err) == (1, f"mini-engine: {tmp_path}/none: No such file or directory\n")


def test_run_steps_get_the_containers_defences(engine: Engine, tmp_path: Path) -> None:
    """RUN is a container like any: no network but lo, docker's capabilities, seccomp, no_new_privs."""
    directory = context(tmp_path, """\
FROM busybox
RUN ls /sys/class/net > /links && grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status > /status
""")
    build(engine, directory, "--no-cache", "-t", "test/defences")
    try:
        assert run(engine, "test/defences", "cat", "/links") == "lo\n"
        status = dict(line.split(":\t") for line in run(engine, "test/defences", "cat", "/status").splitlines())
        assert status == {"CapEff": "00000000a80425fb", "NoNewPrivs": "1", "Seccomp": "2"}
    finally:
        rmi(engine, "test/defences")


def test_run_joins_the_hosts_network_only_when_asked(engine: Engine, tmp_path: Path) -> None:
    directory = context(tmp_path, "FROM busybox\nRUN readlink /proc/self/ns/net > /net\n")
    build(engine, directory, "--no-cache", "-t", "test/net")
    build(engine, directory, "--no-cache", "--network", "host", "-t", "test/hostnet")
    try:
        mine = os.readlink("/proc/self/ns/net") + "\n"
        assert run(engine, "test/net", "cat", "/net") != mine
        assert run(engine, "test/hostnet", "cat", "/net") == mine
    finally:
        rmi(engine, "test/net", "test/hostnet")


def test_mode_bits_survive_the_round_trip(engine: Engine, tmp_path: Path) -> None:
    """What a RUN makes is what the next one sees: setuid, setgid, sticky, owners, xattrs."""
    directory = context(tmp_path, """\
FROM busybox
RUN mkdir -m 1777 /shared && touch /sg && chown 5:6 /sg && chmod 2710 /sg && mkfifo -m 640 /fifo
RUN stat -c '%a %u %g %F %n' /shared /sg /fifo > /seen
""")
    build(engine, directory, "--no-cache", "-t", "test/modes")
    try:
        expected = "1777 0 0 directory /shared\n2710 5 6 regular empty file /sg\n640 0 0 fifo /fifo\n"
        assert run(engine, "test/modes", "cat", "/seen") == expected  # the second RUN saw them so
        assert run(engine, "test/modes", "stat", "-c", "%a %u %g %F %n", "/shared", "/sg", "/fifo") == expected
        first = layer_members(engine, "test/modes", 1)
        assert first["shared"].mode == 0o1777 and first["sg"].mode == 0o2710
        assert (first["sg"].uid, first["sg"].gid) == (5, 6)
        assert first["fifo"].isfifo() and stat.S_IMODE(first["fifo"].mode) == 0o640
    finally:
        rmi(engine, "test/modes")


def test_commit_tag_and_history(engine: Engine, tmp_path: Path) -> None:
    result = engine("run", "--name", "to-commit", "busybox", "sh", "-c", "echo changed > /changed; rm /bin/ls")
    assert result.returncode == 0, result.stderr
    try:
        result = engine("commit", "-m", "by hand", "to-commit", "test/committed")
        assert result.returncode == 0, result.stderr
        assert result.stdout == inspect(engine, "test/committed")["Id"] + "\n"
        assert run(engine, "test/committed", "cat", "/changed") == "changed\n"
        assert engine("run", "--rm", "test/committed", "ls", "/").returncode == 127  # ls is gone
        members = layer_members(engine, "test/committed", -1)
        assert {"changed", "bin/.wh.ls"} <= set(members)
        assert engine("tag", "test/committed", "test/other:2", "test/third").returncode == 0
        assert inspect(engine, "test/other:2")["Id"] == inspect(engine, "test/third")["Id"] \
            == inspect(engine, "test/committed")["Id"]
        history = engine("history", "test/committed")
        lines = history.stdout.splitlines()
        assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
        assert len(lines) == 2  # the bundled busybox has no history of its own
        assert lines[1].startswith(inspect(engine, "test/committed")["Id"][7:19])
        assert lines[1].endswith("by hand") and "mini-engine commit " in lines[1]
        rows = json.loads(engine("history", "--format", "json", "test/committed").stdout)
        assert [(r["comment"], r["empty_layer"]) for r in rows] == [("by hand", False)]
    finally:
        engine("rm", "to-commit")
        rmi(engine, "test/committed", "test/other:2", "test/third")


def test_commit_and_tag_refusals(engine: Engine) -> None:
    result = engine("commit", "nosuch", "x")
    assert (result.returncode, result.stderr) == (125, 'mini-engine: container "nosuch" does not exist\n')
    missing = 'mini-engine: image "nosuch-image" is not here'
    result = engine("tag", "nosuch-image", "x")
    assert result.returncode == 125 and result.stderr.startswith(missing)
    result = engine("history", "nosuch-image")
    assert result.returncode == 125 and result.stderr.startswith(missing)


def test_history_of_a_build_names_each_step_and_its_layer(engine: Engine, tmp_path: Path) -> None:
    directory = context(tmp_path, "FROM busybox\nENV A=1\nRUN echo hi > /hi\nCMD [\"true\"]\n")
    build(engine, directory, "-t", "test/history")
    try:
        rows = json.loads(engine("history", "--format", "json", "test/history").stdout)
        assert [(r["created_by"], r["empty_layer"]) for r in rows] == [
            ('/bin/sh -c #(nop) CMD ["true"]', True), ("/bin/sh -c echo hi > /hi", False),
            ("/bin/sh -c #(nop) ENV A=1", True),
            ("(a layer of the base image, with no history of its own)", False)]
        assert rows[1]["size"] > 0 and rows[0]["size"] == 0
        assert rows[3]["size"] == inspect(engine, "busybox")["Size"]
    finally:
        rmi(engine, "test/history")
