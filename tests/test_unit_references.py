"""Image references, normalised as docker normalises them (mini_engine/images/reference.py),
and the platform chosen from an image index (mini_engine/images/imageconfig.py).

The examples are those of docker's own tests (distribution's reference
package, normalize_test.go: TestParseRepositoryInfo, TestValidateReferenceName).
"""

from __future__ import annotations

import pytest

from mini_engine.base.errors import ContainerError
from mini_engine.images import imageconfig, reference

pytestmark = [pytest.mark.stage(5), pytest.mark.unit]


@pytest.mark.parametrize(("text", "domain", "path"), [
    ("fooo/bar", "docker.io", "fooo/bar"),
    ("library/ubuntu", "docker.io", "library/ubuntu"),
    ("nonlibrary/ubuntu", "docker.io", "nonlibrary/ubuntu"),
    ("ubuntu", "docker.io", "library/ubuntu"),
    ("other/library", "docker.io", "other/library"),
    ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000", "private/moonbase"),
    ("127.0.0.1:8000/privatebase", "127.0.0.1:8000", "privatebase"),
    ("example.com/private/moonbase", "example.com", "private/moonbase"),
    ("example.com/privatebase", "example.com", "privatebase"),
    ("example.com:8000/private/moonbase", "example.com:8000", "private/moonbase"),
    ("example.com:8000/privatebase", "example.com:8000", "privatebase"),
    ("localhost:8000/private/moonbase", "localhost:8000", "private/moonbase"),
    ("localhost:8000/privatebase", "localhost:8000", "privatebase"),
    ("localhost/privatebase", "localhost", "privatebase"),
    ("index.docker.io/fooo/bar", "docker.io", "fooo/bar"),
    ("index.docker.io/library/ubuntu", "docker.io", "library/ubuntu"),
    ("index.docker.io/ubuntu", "docker.io", "library/ubuntu"),
    ("docker.io/fooo/bar", "docker.io", "fooo/bar"),
    ("docker.io/library/ubuntu", "docker.io", "library/ubuntu"),
    ("docker.io/ubuntu", "docker.io", "library/ubuntu"),
    ("ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base"),
    ("docker.io/ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base"),
    ("index.docker.io/ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base"),
    ("192.168.0.1:8/debian", "192.168.0.1:8", "debian"),
    ("[fc00::1]:5000/docker", "[fc00::1]:5000", "docker"),
    ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io",
     "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev"),
])
def test_docker_s_normalisation(text: str, domain: str, path: str) -> None:
    assert reference.parse(text) == reference.Reference(domain, path, "latest", None)


@pytest.mark.parametrize(("text", "tag", "digest"), [
    ("192.168.0.1:80", "80", None),  # a one-component name: the ":" is its tag's
    ("ubuntu:20.04", "20.04", None),
    ("ubuntu@sha256:" + "0" * 64, None, "sha256:" + "0" * 64),
    ("ubuntu:x@sha256:" + "f" * 64, "x", "sha256:" + "f" * 64),
])
def test_tags_and_digests(text: str, tag: str | None, digest: str | None) -> None:
    parsed = reference.parse(text)
    assert (parsed.tag, parsed.digest) == (tag, digest)


@pytest.mark.parametrize(("text", "message"), [
    ("https://github.com/docker/docker", "invalid reference format: 'https://github.com/docker/docker' "
                                         "(bad registry 'https:')"),
    ("docker/Docker", "invalid reference format: repository name must be lowercase: 'docker/Docker'"),
    ("-docker", "invalid reference format: '-docker' (bad name component '-docker')"),
    ("-docker/docker", "invalid reference format: '-docker/docker' (bad name component '-docker')"),
    ("-docker.io/docker/docker", "invalid reference format: '-docker.io/docker/docker' "
                                 "(bad registry '-docker.io')"),
    ("docker///docker", "invalid reference format: 'docker///docker' (bad name component '')"),
    ("docker.io/docker/Docker", "invalid reference format: repository name must be lowercase: "
                                "'docker.io/docker/Docker'"),
    ("docker.io/docker///docker", "invalid reference format: 'docker.io/docker///docker' "
                                  "(bad name component '')"),
    ("ubuntu:", "invalid reference format: 'ubuntu:' (bad tag '')"),
    ("ubuntu@sha256:abc", "invalid reference format: 'ubuntu@sha256:abc' (digest must be sha256:<64 hex>)"),
    ("a/" + "b" * 250, f"invalid reference format: 'a/{'b' * 250}' (name longer than 255)"),
])
def test_what_docker_refuses(text: str, message: str) -> None:
    with pytest.raises(ContainerError) as caught:
        reference.parse(text)
    assert str(caught.value) == message


INDEX = [
    {"digest": "sha256:1", "platform": {"os": "linux", "architecture": "amd64"}},
    {"digest": "sha256:2", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
    {"digest": "sha256:3", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
    {"digest": "sha256:4", "platform": {"os": "windows", "architecture": "amd64"}},
    "not an entry",
]


@pytest.mark.parametrize(("want", "digest"), [
    ({"os": "linux", "architecture": "amd64"}, "sha256:1"),
    ({"os": "linux", "architecture": "arm", "variant": "v7"}, "sha256:3"),  # not v6, the first arm
    ({"os": "linux", "architecture": "arm"}, "sha256:2"),  # no variant asked: the first
    ({"os": "windows", "architecture": "amd64"}, "sha256:4"),
])
def test_the_platform_chosen_from_an_index(want: dict[str, str], digest: str) -> None:
    assert imageconfig.choose_platform(INDEX, want, "img")["digest"] == digest


def test_no_image_for_the_platform() -> None:
    with pytest.raises(imageconfig.NoPlatform) as caught:
        imageconfig.choose_platform(INDEX, {"os": "linux", "architecture": "arm", "variant": "v8"}, "img")
    assert str(caught.value) == ("img: no image for linux/arm/v8 (the index has linux/amd64, linux/arm/v6, "
                                 "linux/arm/v7, windows/amd64)")
