"""Configuration files where docker and podman users look for them (issue 21): registries.conf
(short names, mirrors, blocked registries), policy.json (reject, insecureAcceptAnything) and
containers.conf (default network, log size, runtime), with the environment still overriding.

The registries are Debian's docker-registry on loopback, filled by skopeo, as the pull tests'.
Each test points the engine at a configuration directory of its own (MINI_ENGINE_CONFIG), and
judges by where the bytes came from (each registry's access log), what the store holds, and
what the container's kernel shows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Engine, ImageFiles
from fixtures.registry import Registry

pytestmark = [pytest.mark.stage(5), pytest.mark.root]


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory, test_images: ImageFiles
               ) -> Iterator[tuple[Registry, Registry]]:
    """A registry with team/app:1 and team/app:2, and a mirror of it that has only cache/team/app:1."""
    work = tmp_path_factory.mktemp("registries")
    (work / "main").mkdir()
    (work / "mirror").mkdir()
    main, mirror = Registry(work / "main"), Registry(work / "mirror")
    try:
        for tag in ("1", "2"):
            main.push(f"oci:{test_images.layout}:single", f"team/app:{tag}")
        main.push(f"oci:{test_images.layout}:single", "other/app:1")
        mirror.push(f"oci:{test_images.layout}:single", "cache/team/app:1")
        yield main, mirror
    finally:
        main.stop()
        mirror.stop()


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[tuple[Engine, Path]]:
    """An engine with a store and a configuration directory of its own."""
    conf = tmp_path / "conf"
    conf.mkdir()
    engine = Engine(tmp_path / "lib", tmp_path / "run")
    os.environ["MINI_ENGINE_CONFIG"] = str(conf)  # Engine.env copies os.environ
    try:
        yield engine, conf
    finally:
        del os.environ["MINI_ENGINE_CONFIG"]


def image_names(engine: Engine) -> list[str]:
    out = engine("images", "--format", "json")
    assert out.returncode == 0, out.stderr
    return sorted(tag for image in json.loads(out.stdout) for tag in image["RepoTags"])


def manifest_gets(registry: Registry) -> list[str]:
    registry.log.flush()
    return [line.split('"GET ')[1].split(" ")[0] for line in (registry.work / "registry.log").read_text()
            .splitlines() if '"GET /v2/' in line and "/manifests/" in line]


def test_a_short_name_is_looked_for_in_each_search_registry(
        configured: tuple[Engine, Path], registries: tuple[Registry, Registry]) -> None:
    engine, conf = configured
    main, mirror = registries
    (conf / "registries.conf").write_text(
        f'unqualified-search-registries = ["{mirror.host}", "{main.host}"]\n')
    before = len(manifest_gets(mirror)), len(manifest_gets(main))
    pulled = engine("pull", "-q", "team/app:2")
    assert pulled.returncode == 0, pulled.stderr
    # Asked of the first (which has no team/app), then found in the second.
    assert manifest_gets(mirror)[before[0]:] == ["/v2/team/app/manifests/2"]
    assert manifest_gets(main)[before[1]:] == ["/v2/team/app/manifests/2"]
    assert image_names(engine) == [f"{main.host}/team/app:2"]
    # The short name now finds the image here: run pulls nothing more.
    ran = engine("--stage", "5", "run", "--rm", "team/app:2")
    assert ran.stdout == "from-image 1000:1000 /srv/app /home/app\n", ran.stderr
    assert len(manifest_gets(main)) == before[1] + 1
    # Not found anywhere: each registry's answer, on one line.
    missing = engine("pull", "nosuch/app:1")
    assert missing.returncode == 125 and missing.stderr.count("\n") == 1
    assert missing.stderr.startswith(f"mini-engine: nosuch/app:1: {mirror.host}: not found (404)")
    assert f"; {main.host}: not found (404)" in missing.stderr


def test_a_mirror_is_tried_first_and_the_location_after_it(
        configured: tuple[Engine, Path], registries: tuple[Registry, Registry]) -> None:
    engine, conf = configured
    main, mirror = registries
    (conf / "registries.conf").write_text(f'''
[[registry]]
prefix = "example.test/team"
location = "{main.host}/team"

[[registry.mirror]]
location = "{mirror.host}/cache/team"
''')
    gets = len(manifest_gets(mirror)), len(manifest_gets(main))
    assert engine("pull", "-q", "example.test/team/app:1").returncode == 0
    assert manifest_gets(mirror)[gets[0]:] == ["/v2/cache/team/app/manifests/1"]
    assert manifest_gets(main)[gets[1]:] == []  # the mirror had it
    # app:2 is not on the mirror: the location serves it.
    assert engine("pull", "-q", "example.test/team/app:2").returncode == 0
    assert manifest_gets(main)[gets[1]:] == ["/v2/team/app/manifests/2"]
    # The images keep the names they were asked by.
    assert image_names(engine) == ["example.test/team/app:1", "example.test/team/app:2"]


def test_a_blocked_registry_is_refused(configured: tuple[Engine, Path],
                                       registries: tuple[Registry, Registry]) -> None:
    engine, conf = configured
    main, _ = registries
    (conf / "registries.conf").write_text(f'[[registry]]\nlocation = "{main.host}"\nblocked = true\n')
    result = engine("pull", f"{main.host}/team/app:1")
    assert (result.returncode, result.stderr) == (
        125, f"mini-engine: {main.host}/team/app: pulling from {main.host} is blocked by "
             f"{conf}/registries.conf\n")
    assert image_names(engine) == []


def test_the_policy_rejects_and_accepts_by_scope(configured: tuple[Engine, Path],
                                                registries: tuple[Registry, Registry]) -> None:
    engine, conf = configured
    main, _ = registries
    (conf / "policy.json").write_text(json.dumps({
        "default": [{"type": "reject"}],
        "transports": {"docker": {f"{main.host}/team": [{"type": "insecureAcceptAnything"}],
                                  f"{main.host}/team/app:2": [{"type": "signedBy", "keyType": "GPGKeys",
                                                               "keyPath": "/nonexistent.gpg"}]}},
    }, indent=2))
    gets = len(manifest_gets(main))
    assert engine("pull", "-q", f"{main.host}/team/app:1").returncode == 0
    refused = engine("pull", f"{main.host}/other/app:1")
    assert (refused.returncode, refused.stderr) == (
        125, f"mini-engine: {main.host}/other/app:1: pulling is refused by {conf}/policy.json "
             "(default: reject)\n")
    signed = engine("run", "--rm", f"{main.host}/team/app:2")
    assert signed.returncode == 125
    assert signed.stderr.endswith(f"{conf}/policy.json (scope \"{main.host}/team/app:2\") asks for signedBy, "
                                  "a signature check this engine does not make; refused rather than taken "
                                  "unchecked\n")
    # Refused before a byte: the registry saw one pull, the one accepted.
    assert manifest_gets(main)[gets:] == ["/v2/team/app/manifests/1"]
    assert image_names(engine) == [f"{main.host}/team/app:1"]
    assert engine.containers() == []


@pytest.mark.stage(8)  # the engine's defaults: a network (7), a detached container's log (8)
def test_containers_conf_gives_the_default_network_and_the_environment_overrides_it(
        configured: tuple[Engine, Path]) -> None:
    engine, conf = configured
    (conf / "containers.conf").write_text('[network]\ndefault_network = "host"\n')
    here = os.readlink("/proc/self/ns/net")
    env = {k: v for k, v in engine.env.items() if k != "MINI_ENGINE_NETWORK"}
    on_host = engine("run", "--rm", "busybox", "readlink", "/proc/self/ns/net", env=env)
    assert (on_host.returncode, on_host.stdout) == (0, f"{here}\n"), on_host.stderr
    own = engine("run", "--rm", "busybox", "readlink", "/proc/self/ns/net")  # MINI_ENGINE_NETWORK=none
    assert own.returncode == 0 and own.stdout.startswith("net:[") and own.stdout != f"{here}\n"
    assert engine.containers() == []


@pytest.mark.stage(8)  # a detached container's log is stage 8's
def test_containers_conf_gives_the_runtime_and_the_log_size(configured: tuple[Engine, Path]) -> None:
    engine, conf = configured
    (conf / "containers.conf").write_text(f'[engine]\nruntime = "{REPO}/bin/mini-runc"\n\n'
                                          "[containers]\nlog_size_max = 8192\n")
    made = engine("run", "-d", "busybox", "sh", "-c", "for i in $(seq 1000); do echo line $i; done")
    assert made.returncode == 0, made.stderr
    cid = made.stdout.strip()
    try:
        assert engine("wait", cid).stdout == "0\n"
        record = json.loads(engine("inspect", cid).stdout)[0]
        assert record["OCIRuntime"] == "mini-runc" and (engine.runroot / "runtimes" / "mini-runc").is_dir()
        # 1000 lines of about 50 bytes: the log started again from empty, and holds the last ones.
        assert os.path.getsize(record["LogPath"]) <= 8192
        lines = engine("logs", cid).stdout.splitlines()
        assert lines[-1] == "line 1000" and 0 < len(lines) < 1000
        assert lines == [f"line {n}" for n in range(1001 - len(lines), 1001)]
    finally:
        engine("rm", "-f", cid)
    # MINI_ENGINE_RUNTIME wins over the file: the in-process runtime.
    env = dict(engine.env, MINI_ENGINE_RUNTIME="mini-runc")
    made = engine("run", "-d", "busybox", "sleep", "30", env=env)
    try:
        assert engine.runtime_states() == [made.stdout.strip()]
    finally:
        engine("rm", "-f", made.stdout.strip(), env=env)


@pytest.mark.parametrize(("name", "text", "message"), [
    ("registries.conf", 'unqualified-search-registries = ["docker.io"\n[[registry]]\n',
     "line 2: Unclosed array"),
    ("registries.conf", '\n[[registry]]\nlocation = "127.0.0.1:5000"\ninsecure = "yes"\n',
     "line 4: insecure: must be true or false"),
    ("registries.conf", '[registries.search]\nregistries = ["docker.io"]\n',
     "line 2: registries: this is version 1 of the format; write unqualified-search-registries and "
     "[[registry]] tables (containers-registries.conf(5))"),
    ("registries.conf", 'unqualified-search-registries = ["https://docker.io"]\n',
     "line 1: unqualified-search-registries: must be HOST[:PORT][/PATH], without a scheme"),
    ("policy.json", '{"default": [{"type": "insecureAcceptAnything"}],\n "transports": {\n  "docker": {\n'
                    '   "x.test": [{"type": "acceptIfNice"}]}}}\n',
     "line 4: x.test: unknown requirement type 'acceptIfNice' (insecureAcceptAnything, reject, signedBy, "
     "sigstoreSigned)"),
    ("policy.json", '{"default": [\n  {"type": "reject"},\n]}\n', "line 3: Expecting value"),
    ("policy.json", '{"transports": {}}\n',
     'line 1: default: the policy needs a "default" list of requirements, e.g. [{"type": "reject"}]'),
    ("containers.conf", '[containers]\nlog_size_max = 100\n',
     "line 2: log_size_max: must be a number of bytes, 8192 or more, or -1 (no limit)"),
    ("containers.conf", '[network]\ndefault_network = \n', "line 2: Invalid value"),
], ids=lambda v: v if v.endswith(("conf", "json")) else None)
def test_a_malformed_file_is_one_line_naming_it_and_the_line(configured: tuple[Engine, Path], name: str,
                                                            text: str, message: str) -> None:
    engine, conf = configured
    (conf / name).write_text(text)
    for command in (["run", "--rm", "busybox", "true"], ["pull", "127.0.0.1:9/nothing/here:1"], ["ps"]):
        result = engine(*command)
        assert (result.returncode, result.stdout, result.stderr) == (
            125, "", f"mini-engine: {conf / name}, {message}\n"), command
    assert engine.containers() == []


def test_insecure_means_plain_http_to_that_registry_and_its_mirrors(configured: tuple[Engine, Path]) -> None:
    """Loopback is plain HTTP anyway: this is the URL a remote registry gets, as the engine makes it."""
    from mini_engine.images import registries
    from mini_engine.images.reference import parse
    from mini_engine.images.registry import Client

    _, conf = configured
    (conf / "registries.conf").write_text(
        '[[registry]]\nlocation = "registry.test:5000"\ninsecure = true\n\n'
        '[[registry.mirror]]\nlocation = "mirror.test/hub"\n')
    registries.load.cache_clear()
    try:
        ends = registries.load().endpoints(parse("registry.test:5000/team/app:1"))
    finally:
        registries.load.cache_clear()
    assert [Client(e.host, "/nonexistent", insecure=e.insecure).base + e.path for e in ends] == [
        "https://mirror.test/v2/hub/team/app", "http://registry.test:5000/v2/team/app"]
