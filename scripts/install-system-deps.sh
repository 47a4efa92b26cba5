#!/usr/bin/env bash
# Install the Debian packages the workbench needs. One list, used by CI, the
# Makefile, the Vagrantfile and a learner's own machine alike.
#
#   scripts/install-system-deps.sh          what running containers needs
#   scripts/install-system-deps.sh --test   plus what the test suite needs
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: run as root (containers need root: sudo $0 $*)" >&2
    exit 1
fi

packages=(
    python3 python3-venv python3-dev   # the engine and its venv (Python >= 3.11)
    busybox-static                      # the bundled image: one static binary, no network
    iproute2                            # ip: to look at namespaces and links by hand
    nftables                            # nft: the networking stage's firewall and NAT
    util-linux                          # unshare, nsenter, lsns: the chapters compare with them
    skopeo umoci                        # lab 05 and the tests build and convert images with them
    docker-registry                     # a real registry on 127.0.0.1 (lab 05, the pull tests)
    make git ca-certificates
    graphviz                            # dot: draws the book's pictures (chapters/pictures/*.dot)
)
test_packages=(
    vagrant                             # CI checks the learners' Vagrantfile with `vagrant validate`
    qemu-system-x86                     # the throwaway cgroup-v2 VM (scripts/testvm.py)
    linux-libc-dev                      # asm/unistd_64.h: a test checks the syscall table's numbers against it
    qemu-user-static binutils-aarch64-linux-gnu  # the aarch64 programs, run and disassembled (tests/test_machines.py)
    golang-go                           # builds the OCI runtime validation suite (scripts/conformance.py)
    runc                                # the reference runtime, beside ours in conformance and bench/
    podman conmon containernetworking-plugins catatonit  # real engines driving mini-runc (in the VM)
    golang-github-containers-common     # /usr/share/containers/seccomp.json: podman's profile, loaded by a test
    netavark aardvark-dns               # podman's network stack, beside ours in bench/network.py
    debootstrap                         # the Debian image of the stage-8 capstone test
    containerd
    buildah                             # builds the same Containerfiles as mini-engine build (stage 9's tests, bench/build.py)
)

want=("${packages[@]}")
if [ "${1:-}" = "--test" ]; then
    want+=("${test_packages[@]}")
fi

# Install only what is missing, so a second run costs nothing and needs no network.
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "install-system-deps: installed ${missing[*]}"
fi
