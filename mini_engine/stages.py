"""The stage ladder: one stage per chapter, one kernel feature per stage.

``mini-engine --stage N`` (or ``--stage SLUG``) runs the engine with every
stage up to N and nothing after, so a learner can watch each feature arrive
on its own. ``mini-engine stages`` prints this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from mini_engine.base.errors import ContainerError


@dataclass(frozen=True)
class Stage:
    number: int
    slug: str
    title: str
    built: bool  # False until its chapter's code has landed
    parts: tuple[str, ...] = ()  # a stage told in more than one chapter: the others' slugs

    @property
    def chapter(self) -> str:
        return f"chapters/{self.number:02d}-{self.slug}.md"

    @property
    def chapters(self) -> list[str]:
        """Its chapters, in reading order: the first is ``chapter``."""
        return [self.chapter, *(f"chapters/{self.number:02d}-{part}.md" for part in self.parts)]

    @property
    def lab(self) -> str:
        return f"labs/{self.number:02d}-{self.slug}"

    def has(self, feature: Stage) -> bool:
        """Does this stage run ``feature``'s chapter (``stage.has(CGROUPS)``)? Every stage
        has its own and those below it."""
        return self.number >= feature.number

    def require(self, feature: Stage, what: str) -> None:
        """Refuse ``what`` (a flag, a command) below the stage that gives it meaning: never ignored."""
        if not self.has(feature):
            raise ContainerError(f"{what} needs stage {feature.number} or above (this is stage "
                                 f"{self.number}, {self.slug})")


STAGES = (
    Stage(0, "process", "a container is a process: fork, exec, exit codes, signals", True),
    Stage(1, "chroot", "a root filesystem of its own, and why chroot is no jail", True),
    Stage(2, "namespaces", "pid, mount, uts, ipc, net, cgroup, time and user namespaces", True),
    Stage(3, "cgroups", "cgroup v2 limits: memory, cpu, pids, io", True),
    Stage(4, "overlayfs", "layered copy-on-write root filesystems", True),
    Stage(5, "images", "OCI images: store, layers, registries", True),
    Stage(6, "security", "capabilities, no_new_privs, seccomp, masked paths; user namespaces, rootless",
          True, ("userns",)),
    Stage(7, "networking", "veth, bridge, NAT, published ports, DNS", True),
    Stage(8, "real-images", "the capstone: real images, detached, logs, exec", True),
    Stage(9, "build", "building images: every RUN a container, every layer an upper dir's diff", True),
    Stage(10, "pods", "pods: shared net, ipc and uts namespaces held by an infra container", True),
)

# The stages by name, for the tests of what a stage has: `if stage.has(IMAGES):`.
(PROCESS, CHROOT, NAMESPACES, CGROUPS, OVERLAYFS, IMAGES, SECURITY, NETWORKING, REAL_IMAGES, BUILD,
 PODS) = STAGES

TOP = max(s.number for s in STAGES if s.built)


def resolve(name: str | int | None) -> Stage:
    """The stage called ``name`` (number or slug); the top built stage for None."""
    if name is None:
        return STAGES[TOP]
    text = str(name).strip().lower()
    for stage in STAGES:
        if text in (str(stage.number), stage.slug):
            if not stage.built:
                raise ContainerError(
                    f"stage {stage.number} ({stage.slug}) is not built yet; "
                    f"the highest stage is {TOP} ({STAGES[TOP].slug})"
                )
            return stage
    names = ", ".join(f"{s.number}/{s.slug}" for s in STAGES if s.built)
    raise ContainerError(f"unknown stage {name!r}: choose one of {names}")
