"""``mini-engine run``: make a bundle, then create, start and wait, as podman does.

Chapter 00 reads this module. The engine decides (which image, which
command, which environment) and writes config.json; the runtime
(``mini_engine.runtime``) carries it out. Between them is nothing but the
bundle directory.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import signal
import socket
import sys
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any

from mini_engine import flags
from mini_engine.base import identity, rootpath
from mini_engine.base.errors import ContainerError
from mini_engine.base.signals import parse_signal
from mini_engine.config import kernel, spec
from mini_engine.config.kernel import KernelOptions
from mini_engine.config.limits import Limits, resources
from mini_engine.config.security import Options as SecurityOptions
from mini_engine.containers import events, runtime
from mini_engine.containers import record as containers
from mini_engine.flags import flag, group
from mini_engine.images import busybox, imageconfig
from mini_engine.paths import Paths
from mini_engine.settings import engine as engine_settings
from mini_engine.settings.files import ConfigError
from mini_engine.stages import (
    CGROUPS,
    CHROOT,
    IMAGES,
    NAMESPACES,
    NETWORKING,
    OVERLAYFS,
    PODS,
    PROCESS,
    REAL_IMAGES,
    SECURITY,
    Stage,
)


# [book:run-flags]
@dataclass
class Request:
    """The command line of ``run`` (and of ``spec``): each flag, its field, the stage it needs.

    The parser is made from these fields in this order (``mini_engine/flags.py``),
    so this is also the order of ``mini-engine run --help``.
    """

    rm: bool = flag("--rm", since=PROCESS, action="store_true", help="remove the container when it exits")
    interactive: bool = flag("-i", "--interactive", since=PROCESS, action="store_true",
                             help="keep stdin attached")
    tty: bool = flag("-t", "--tty", since=PROCESS, action="store_true", help="give the container a terminal")
    # -h is --hostname in run, as in docker; --help still helps.
    hostname: str | None = flag("--hostname", "-h", since=NAMESPACES, help="the container's hostname (stage 2)")
    env: list[str] = flag("-e", "--env", since=PROCESS, action="append", default=[], metavar="KEY=VALUE",
                          help="set an environment variable (KEY alone: take it from here)")
    workdir: str | None = flag("-w", "--workdir", since=PROCESS, help="working directory inside the container")
    rootfs: str | None = flag("--rootfs", since=PROCESS, metavar="DIR",
                              help="use DIR as the root filesystem instead of an image")
    entrypoint: str | None = flag("--entrypoint", since=IMAGES, metavar="CMD",
                                  help="replace the image's Entrypoint (and drop its Cmd)")
    user: str | None = flag("-u", "--user", since=IMAGES, metavar="USER[:GROUP]",
                            help="run as this user of the image (stage 5)")
    userns: str = flag("--userns", since=NAMESPACES, root_only=True, choices=["host", "auto"], default="host",
                       help="auto: a user namespace mapping root to an unprivileged range (stage 2)")
    time_offset: int | None = flag("--time-offset", since=NAMESPACES, type=int, metavar="SECONDS",
                                   help="a time namespace with the monotonic and boot clocks shifted (stage 2)")
    limits: Limits = group(Limits)  # stage 3's -m, --cpus...
    security: SecurityOptions = group(SecurityOptions)  # stage 6's --cap-add, --privileged...
    network: str | None = flag("--network", "--net", since=NETWORKING, metavar="NAME",
                               help="bridge (the default), none, host, or a network made with 'network create' "
                                    "(stage 7)")
    name: str | None = flag("--name", since=NETWORKING,
                            help="a name for the container, unique; others on its network reach it by it")
    network_alias: list[str] = flag("--network-alias", since=NETWORKING, action="append", default=[],
                                    metavar="NAME", help="one more name on its user network, answered by "
                                                         "the network's DNS")
    ip: str | None = flag("--ip", since=NETWORKING, metavar="ADDRESS",
                          help="its IPv4 address on its user network (one the network does not use yet)")
    dns: list[str] = flag("--dns", since=NETWORKING, action="append", default=[], metavar="ADDRESS",
                          help="a nameserver (on a user network: where its DNS forwards this container's "
                               "other queries)")
    dns_search: list[str] = flag("--dns-search", since=NETWORKING, action="append", default=[],
                                 metavar="DOMAIN", help="a search domain of resolv.conf ('.': none)")
    add_host: list[str] = flag("--add-host", since=NETWORKING, action="append", default=[],
                               metavar="NAME:ADDRESS", help="a line of its /etc/hosts (ADDRESS host-gateway: "
                                                            "the bridge's)")
    publish: list[str] = flag("-p", "--publish", since=NETWORKING, action="append", default=[],
                              metavar="[IP:][HOSTPORT:]PORT[/PROTO]",
                              help="publish a container's port on the host (stage 7)")
    publish_all: bool = flag("-P", "--publish-all", since=NETWORKING, action="store_true",
                             help="publish every port the image EXPOSEs")
    pod: str | None = flag("--pod", since=PODS, metavar="POD",
                           help="join a pod: its network, IPC and UTS namespaces (stage 10)")
    detach: bool = flag("-d", "--detach", since=REAL_IMAGES, action="store_true",
                        help="run in the background; print the id (stage 8: logs, stop, wait)")
    volumes: list[str] = flag("-v", "--volume", since=REAL_IMAGES, action="append", default=[],
                              metavar="SOURCE:DEST[:ro]",
                              help="a host path or a named volume, mounted (stage 8)")
    tmpfs: list[str] = flag("--tmpfs", since=REAL_IMAGES, action="append", default=[], metavar="DEST[:OPTIONS]",
                            help="a fresh tmpfs")
    read_only: bool = flag("--read-only", since=REAL_IMAGES, action="store_true",
                           help="the root filesystem read-only")
    init: bool = flag("--init", since=REAL_IMAGES, action="store_true",
                      help="a tiny init (catatonit) as PID 1 that reaps zombies")
    restart: str = flag("--restart", since=REAL_IMAGES, default="no", metavar="POLICY",
                        help="no, always, unless-stopped, on-failure[:N]: what the monitor does when the "
                             "container exits (never after stop)")
    labels: list[str] = flag("-l", "--label", since=PROCESS, action="append", default=[], metavar="KEY=VALUE",
                             help="a label on the container (inspect's Config.Labels; ps --filter label=KEY)")
    env_file: list[str] = flag("--env-file", since=PROCESS, action="append", default=[], metavar="FILE",
                               help="environment variables from FILE, a KEY=VALUE a line (-e wins)")
    cidfile: str | None = flag("--cidfile", since=PROCESS, metavar="FILE",
                               help="write the container's id to FILE, which must not exist")
    pull: str = flag("--pull", since=IMAGES, choices=["always", "missing", "never"], default="missing",
                     help="pull the image always, when missing (the default), or never (stage 5)")
    streams: list[str] = flag("-a", "--attach", since=PROCESS, action="append", default=[],
                              choices=["stdin", "stdout", "stderr"], metavar="STREAM",
                              help="attach only these of stdin, stdout, stderr (default: stdout and stderr; "
                                   "the others go to the log only)")
    log_opt: list[str] = flag("--log-opt", since=REAL_IMAGES, action="append", default=[], metavar="KEY=VALUE",
                              help="max-size=SIZE (10m), max-file=N: when its log rotates (defaults: "
                                   "mini_engine/containers/logfile.py)")
    kernel: KernelOptions = group(KernelOptions)  # stage 8's --ulimit, --sysctl, --device, --shm-size...
    mounts: list[str] = flag("--mount", since=REAL_IMAGES, action="append", default=[],
                             metavar="type=bind|volume|tmpfs,target=PATH[,...]",
                             help="a mount, in docker's longer spelling: source, target, readonly, "
                                  "bind-propagation, tmpfs-size, tmpfs-mode")
    stop_signal: str | None = flag("--stop-signal", since=REAL_IMAGES, metavar="SIGNAL",
                                   help="what stop sends first (default: the image's StopSignal, or SIGTERM)")
    stop_timeout: int | None = flag("--stop-timeout", since=REAL_IMAGES, type=int, metavar="SECONDS",
                                    help="how long stop waits before SIGKILL (default 10; -1: for ever)")
    args: list[str] = flag("args", since=PROCESS, nargs=argparse.REMAINDER, metavar="IMAGE [COMMAND [ARG...]]",
                           help="the image, then the command and its arguments (default: the image's)")
# [/book:run-flags]


def check_flags(request: Request, stage: Stage) -> None:
    given = flags.given(request)
    refused = [f.name for f in given if f.root_only]
    if refused and identity.rootless():
        raise ContainerError(f"{refused[0]} is not available rootless: the kernel gives cgroups and "
                             "id ranges to root (run as root, or in the lab VM)")
    # A flag whose meaning arrives with a stage is refused below it, never ignored.
    for f in given:
        stage.require(f.since, f.name)
    if request.streams and request.detach:
        raise ContainerError("conflicting options: -a and -d (attach later: mini-engine attach)")
    if request.log_opt:
        from mini_engine.containers import logfile

        logfile.parse_options(request.log_opt)
    if not RESTART.match(request.restart):
        raise ContainerError(f"--restart {request.restart}: expected no, always, unless-stopped or "
                             "on-failure[:N]")
    if request.restart != "no" and request.rm:
        raise ContainerError("--restart and --rm conflict: a container removed when it exits "
                             "cannot be started again")
    if request.pod is not None:
        # The pod's network namespace is the infra container's, made with the pod.
        if request.publish or request.publish_all:
            raise ContainerError("--publish with --pod: published ports belong to the pod; give them "
                                 "to 'mini-engine pod create -p'")
        if request.network is not None:
            raise ContainerError("--network with --pod: a pod's containers share its network; "
                                 "the pod's infra container was given one when the pod was made")
        if request.userns != "host":
            # The pod's namespaces are owned by the host's user namespace: a
            # container in a user namespace of its own may not mount what
            # they need (/dev/mqueue for the shared IPC namespace, sysfs).
            raise ContainerError("--userns with --pod: the pod's namespaces belong to the host's user "
                                 "namespace, which a container of the pod must share")
    if request.stop_signal is not None:
        try:
            parse_signal(request.stop_signal)
        except ContainerError:
            raise ContainerError(f"--stop-signal {request.stop_signal}: not a signal (TERM, SIGUSR1, 15...)"
                                 ) from None
    if request.stop_timeout is not None and request.stop_timeout < -1:
        raise ContainerError(f"--stop-timeout {request.stop_timeout}: seconds, or -1 to wait for ever")


RESTART = re.compile(r"^(no|always|unless-stopped|on-failure(:[0-9]+)?)$")


@dataclass
class ImageChoice:
    """The image a container runs, and how its root filesystem is made."""

    name: str                  # as the user typed it ("" for --rootfs)
    config: dict[str, Any]     # the image config (image-spec config.md)
    copy_from: str | None = None      # stages 1-3: a directory to copy
    lowers: list[str] | None = None   # stage 4 on: layers to mount, top first
    image_id: str | None = None       # stage 5 on: the image's id in the store


# [book:choose-image]
def choose_image(paths: Paths, name: str, stage: Stage, pull: str = "missing") -> ImageChoice:
    """Before the images stage, the bundled busybox; from it on, the store."""
    if not stage.has(IMAGES):
        if name not in (busybox.NAME, f"{busybox.NAME}:latest"):
            raise ContainerError(
                f'image "{name}" is not here: until the images stage, the only image '
                f'is the bundled "{busybox.NAME}" (or run --rootfs DIR)'
            )
        bundled = busybox.image(paths)
        if stage.has(OVERLAYFS):  # one lower layer: the bundled root filesystem
            return ImageChoice(name, bundled.config, lowers=[bundled.rootfs])
        return ImageChoice(name, bundled.config, copy_from=bundled.rootfs)
    from mini_engine.images.store import ImageError, Store, parse_json

    store = Store(paths.root)
    try:
        # --pull always: the registry's image, even when one of that name is here.
        if pull == "always" and not busybox.is_bundled_name(name):
            raise ImageError(f'--pull always: pulling "{name}"')
        record = store.lookup(name)
    except ImageError as missing:
        if pull == "never" and not busybox.is_bundled_name(name):  # the bundled one is here, not pulled
            raise ContainerError(f'{missing}; --pull never: pull it first (mini-engine pull), '
                                 "or drop --pull never") from None
        if not busybox.is_bundled_name(name):
            # docker pulls what is not here (chapter 05's registry client).
            from mini_engine.images import registry

            try:
                record = registry.pull(store, name, quiet=True)
            except ConfigError:
                raise  # a configuration file to mend, not this image
            except ContainerError as exc:
                raise ContainerError(f"{missing}; pulling it failed: {exc}") from None
        else:
            record = None
    if record is None or busybox.is_stale(store, record):
        busybox.import_into(paths, store)
        record = store.lookup(name)
    config = parse_json(store.read_blob(record["Id"]), "image config")
    lowers: list[str] = []
    for entry in reversed(record["Layers"]):  # top first
        link = store.short_link(entry["diffID"])
        # A layer listed twice shows the same from its topmost place, and
        # overlay refuses a lowerdir named twice (ELOOP).
        if link not in lowers:
            lowers.append(link)
    return ImageChoice(name, config, lowers=lowers, image_id=record["Id"])
# [/book:choose-image]


def resolve(paths: Paths, request: Request, container_id: str, stage: Stage
            ) -> tuple[ImageChoice, spec.RunOptions]:
    """The image and the RunOptions for ``request``."""
    args = list(request.args)
    user = imageconfig.User(home="/root")
    lowers: list[str] = []
    if request.rootfs is not None:
        if not os.path.isdir(request.rootfs):
            raise ContainerError(f"--rootfs {request.rootfs}: no such directory")
        if not args:
            raise ContainerError("no command given (with --rootfs there is no image to take one from)")
        choice = ImageChoice("", {"config": {"Env": [f"PATH={busybox.PATH}"]}})
        command, rootfs = args, os.path.abspath(request.rootfs)
    else:
        if not args:
            raise ContainerError("run needs an image (or --rootfs DIR); see 'mini-engine run --help'")
        choice = choose_image(paths, args[0], stage, request.pull)
        command = imageconfig.command(choice.config, request.entrypoint, args[1:])
        rootfs = "rootfs"
        if stage.has(IMAGES):
            lowers = [os.path.join(paths.root, lower) for lower in choice.lowers or []]
            user = imageconfig.resolve_user(
                request.user if request.user is not None else choice.config.get("config", {}).get("User"),
                imageconfig.read_image_file(lowers, "etc/passwd"),
                imageconfig.read_image_file(lowers, "etc/group"))
    image_config = choice.config.get("config") or {}
    if request.kernel.group_add:  # stage 5: a name is the image's group, as -u's are
        added = kernel.group_ids(request.kernel.group_add, imageconfig.read_image_file(lowers, "etc/group"))
        user.additional_gids = list(dict.fromkeys([*user.additional_gids, *added]))
    options = spec.RunOptions(
        container_id=container_id,
        command=command,
        image_env=list(image_config.get("Env") or []),
        env=spec.host_env(request.env),
        workdir=request.workdir or image_config.get("WorkingDir") or None,
        hostname=request.hostname,
        tty=request.tty,
        userns=request.userns,
        time_offset=request.time_offset,
        rootfs=rootfs,
        resources=resources(request.limits),
        user=user.to_spec(),
        home=user.home,
        security=request.security,
        kernel=kernel.settings(request.kernel),
    )
    if request.pod is not None:  # stage 10: the pod's namespaces, and its network with them
        _pod_options(paths, request, options)
    elif stage.has(NETWORKING):
        _network_options(paths, request, choice, options)
    kernel.check_sysctl_namespaces(options.kernel.sysctl, "pod" if "network" in options.pod_namespaces
                                   else options.network, "ipc" in options.pod_namespaces)
    if stage.has(REAL_IMAGES):
        from mini_engine.containers import volumes

        parsed = [volumes.parse_volume(paths, v, container_id) for v in request.volumes]
        parsed += [volumes.parse_mount(paths, m, container_id) for m in request.mounts]
        parsed += [volumes.parse_tmpfs(t) for t in request.tmpfs]
        taken = [mount["destination"] for mount, _ in parsed]
        for destination in taken:
            if taken.count(destination) > 1:
                raise ContainerError(f"duplicate mount point: {destination}")
        parsed += volumes.image_volumes(paths, choice.config, taken, container_id)
        options.volumes = [mount for mount, _ in parsed]
        options.mount_records = [record for _, record in parsed]
        options.read_only = request.read_only
        if request.init:  # refused now, not halfway, on a host without one
            options.init = volumes.init_program()
    return choice, options


def _check_name_flags(paths: Paths, request: Request, mode: str) -> None:
    """--network-alias, --ip, --dns, --add-host: what each needs, checked before anything is made."""
    from mini_engine.network import dns, networks

    bridge = None if mode in networks.MODES else networks.lookup(paths, mode)
    user = bridge if bridge is not None and networks.has_responder(bridge) else None
    # docker refuses both on its default bridge, which has no DNS and no fixed addresses.
    if request.network_alias and user is None:
        raise ContainerError(f"--network-alias needs a user network (mini-engine network create); "
                             f"--network {mode} has no DNS to answer it")
    if request.ip is not None:
        if user is None:
            raise ContainerError(f"--ip needs a user network (mini-engine network create), "
                                 f"not --network {mode}")
        networks.check_address(user, request.ip)
    for server in request.dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise ContainerError(f"--dns {server}: not an IP address") from None
    dns.parse_add_hosts(request.add_host, bridge.gateway if bridge else None)


def _network_options(paths: Paths, request: Request, choice: ImageChoice, options: spec.RunOptions) -> None:
    """Stage 7: which network, which ports (network/networks.py); checked before anything is made."""
    from mini_engine.network import networks, ports

    # The default is podman's: the bridge, or no network rootless. containers.conf's
    # default_network changes it, and MINI_ENGINE_NETWORK that (settings/engine.py).
    mode = (request.network or engine_settings.default_network()
            or ("none" if identity.rootless() else networks.DEFAULT.name))
    if identity.rootless() and mode not in networks.MODES:
        raise ContainerError(f"--network {mode} is not available rootless: bridges belong to root "
                             "(run as root, or in the lab VM)")
    if mode not in networks.MODES:
        networks.lookup(paths, mode)  # an unknown network is an error now, not halfway
    options.network = mode
    options.netns = None if mode in networks.MODES else networks.netns_path(paths, options.container_id)
    _check_name_flags(paths, request, mode)  # refused now, not halfway
    if request.rootfs is None:  # a directory of the user's own is not ours to add files to
        options.name_mounts = networks.name_mounts(paths, mode, options.container_id,
                                                   own_hosts=bool(request.add_host))
    if mode == "host" and options.hostname is None:
        options.hostname = socket.gethostname()  # docker's: the host's network, the host's name
    options.publish = [ports.parse(item) for item in request.publish]
    if request.publish_all:
        options.publish += ports.exposed(choice.config)
    if options.publish and mode in networks.MODES:
        raise ContainerError(f"--publish needs a bridge network; with --network {mode} there is "
                             "nothing to publish to")


# [book:pod-options]
def _pod_options(paths: Paths, request: Request, options: spec.RunOptions) -> None:
    """Stage 10: join the pod's infra container in the namespaces the pod shares."""
    from mini_engine.containers import pod as pods
    from mini_engine.network import networks

    assert request.pod is not None
    joined = pods.load(paths, request.pod)
    if request.hostname is not None and "uts" in joined.share:
        raise ContainerError(f'--hostname with --pod: pod "{joined.name}" shares its UTS namespace, '
                             f'and with it the hostname "{joined.hostname}"')
    options.pod_id = joined.id
    options.pod_namespaces = pods.namespace_paths(joined, pods.infra_pid(paths, joined))
    options.network, options.netns = joined.network, None  # no namespace to wire: the infra's is joined
    if request.rootfs is None:
        options.name_mounts = networks.name_mounts(paths, joined.network)
    if "uts" in joined.share:
        options.hostname = joined.hostname
# [/book:pod-options]




def settle(request: Request) -> None:
    """What ``run`` reads from files and its environment, read once, before anything is made:
    ``--env-file``'s variables join ``-e``'s (which win, coming later), so that ``start`` runs
    the container with what it was given even after the file has gone; ``--cidfile`` must be free."""
    # docker's: a bare KEY takes its value now, from the environment run was given, not start's.
    request.env = spec.host_env([line for path in request.env_file for line in spec.read_env_file(path)]
                                + request.env)
    request.env_file = []
    if request.cidfile is not None and os.path.lexists(request.cidfile):
        raise ContainerError(f"--cidfile {request.cidfile}: the file exists; a container may be using it "
                             "(remove it first)")
    for label in request.labels:
        if not label.partition("=")[0]:
            raise ContainerError(f'--label "{label}": expected KEY=VALUE')


def labels(image_config: dict[str, Any], given: list[str]) -> dict[str, str]:
    """The image's labels, then ``--label``'s (a bare KEY: an empty value), as docker merges them."""
    merged = dict((image_config.get("config") or {}).get("Labels") or {})
    merged.update(dict(label.partition("=")[::2] for label in given))
    return merged


def stop_signal(image_config: dict[str, Any], given: str | None) -> str | None:
    """What ``stop`` sends first: ``--stop-signal``, else the image's StopSignal (STOPSIGNAL), as
    docker chooses; None: SIGTERM."""
    chosen = given or (image_config.get("config") or {}).get("StopSignal")
    if not chosen:
        return None
    try:
        return signal.Signals(parse_signal(str(chosen))).name
    except (ContainerError, ValueError):
        raise ContainerError(f"the image's StopSignal {chosen!r} is not a signal") from None


def print_spec(paths: Paths, request: Request, stage: Stage) -> dict[str, Any]:
    """The config.json ``run`` would write, without running anything."""
    check_flags(request, stage)
    settle(request)
    _, options = resolve(paths, request, containers.new_id(), stage)
    return spec.build(options, stage)


# [book:run]
def run(paths: Paths, request: Request, stage: Stage, runtime_name: str | None = None,
        infra_of: str | None = None, announce: bool = True) -> int:
    """Run a container in the foreground and return its exit code, or detached (``-d``):
    print its id once its command runs, and leave the rest to a monitor (chapter 08).
    ``infra_of``: the container is the infra container of that pod (chapter 10)."""
    if request.tty and request.interactive and not request.detach and not os.isatty(0):
        raise ContainerError("the input device is not a TTY: drop -t, or run from a terminal")
    check_flags(request, stage)
    settle(request)
    client = runtime.choose(paths, runtime_name)  # in-process, or a runtime to exec
    if request.name is not None:  # stage 7
        containers.check_name(paths, request.name)
    container_id = containers.new_id()
    choice, options = resolve(paths, request, container_id, stage)
    if infra_of is not None:
        options.pod_id = infra_of
    if stage.has(CGROUPS):
        # Refuse a limit this host cannot apply before anything is made.
        runtime.refuse_missing_controllers(options.resources)
    if request.detach:  # stage 8
        from mini_engine.containers import monitor

        return monitor.detach(lambda started: _run(paths, request, stage, choice, options, client, started),
                              announce)
    return _run(paths, request, stage, choice, options, client)


def _run(paths: Paths, request: Request, stage: Stage, choice: ImageChoice, options: spec.RunOptions,
         client: runtime.Runtime, started: Any = None, existing: containers.Container | None = None,
         server: Any = None) -> int:
    """Make the container (or take ``existing``, for ``start``), run it (again, as
    ``--restart`` says), and take it all down. ``server``: the attach socket of ``start -a``."""
    # Until the container runs, SIGTERM or SIGHUP stop the engine the way
    # Ctrl-C does: by an exception, so that every undo below still runs.
    with ExitStack() as undo:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            undo.callback(signal.signal, sig, signal.signal(sig, _stop))
        container = existing or _new_container(paths, request, stage, choice, options, client)
        if request.rm:
            undo.callback(containers.remove, paths, container)
        made: list[str] = []  # stage 8: its anonymous volumes (-v /data, the image's VOLUME) made now
        if options.mount_records:  # stage 8
            from mini_engine.containers import volumes

            if request.rm:
                undo.callback(volumes.remove_anonymous, paths, container.id, options.mount_records)
            made = volumes.make_anonymous(paths, container.id, options.mount_records)
        config = spec.build(options, stage)
        if choice.lowers is not None:  # stage 4: the layers, mounted as one
            if stage.has(SECURITY) and "uidMappings" in config["linux"]:
                # The image's files owned right inside (mini_engine/containers/idmap.py).
                container.record.id_map = {key: config["linux"][key] for key in ("uidMappings", "gidMappings")}
                container.save()
            if options.name_mounts:
                containers.make_init_layer(container, [m["destination"] for m in options.name_mounts])
            undo.callback(containers.unmount_rootfs, container)
            containers.mount_rootfs(paths, container)
        if made:  # stage 8: what the image has there, copied up
            volumes.copy_up(paths, os.path.join(container.bundle, "rootfs"), options.mount_records, made)
        if options.workdir and stage.has(CHROOT) and request.rootfs is None:
            # docker makes a missing working directory, inside the container's
            # root: resolved there, so an image's symlink cannot lead out.
            os.close(rootpath.make_in_root(os.path.join(container.bundle, "rootfs"),
                                           options.workdir, directory=True))
        if stage.has(NETWORKING):
            _connect(paths, container, options, request, undo)
        containers.write_config(container, config)
        # Stage 8: a foreground container keeps a log too, as docker's (but one that --rm
        # removes with it is not written at all, and a terminal's output stays the terminal's).
        keep_log = stage.has(REAL_IMAGES) and not (request.rm or request.tty)
        code = _run_once(paths, container, config, request, client, started, keep_log, server)
        server = None  # a restart's monitor listens anew
        # Never after stop (or rm -f), whatever the policy, as docker's.
        while (_restart_wanted(request.restart, code, container.record.restart_count)  # stage 8
               and not containers.stopped_by_user(container)):
            containers.reread(container)
            container.record.restart_count += 1
            container.save()
            code = _run_once(paths, container, config, request, client, started, keep_log)
        return code


def _new_container(paths: Paths, request: Request, stage: Stage, choice: ImageChoice,
                   options: spec.RunOptions, client: runtime.Runtime) -> containers.Container:
    """The bundle directory and the engine's record of the container."""
    container_id = options.container_id
    container = containers.create(paths, container_id, choice.name, choice.copy_from, stage, choice.lowers)
    record = container.record
    record.image_id = choice.image_id  # stage 5: rmi keeps what a container uses
    if request.name:  # stage 7: names come with the networks
        if not containers.reserve_name(paths, request.name, container.id):
            containers.remove(paths, container)
            raise ContainerError(f'the name "{request.name}" is in use by another container; '
                                 "remove it first (mini-engine rm)")
        record.name = request.name
    elif stage.has(NETWORKING):
        record.name = containers.generate_name(paths, container.id)
    record.mounts = options.mount_records  # stage 8: volumes, as inspect shows them
    record.runtime = client.describe()  # every later command asks this one
    record.pod = options.pod_id
    record.config = containers.ContainerConfig(options.command, choice.name,
                                               options.hostname or container_id[:12], request.restart,
                                               labels(choice.config, request.labels),
                                               stop_signal(choice.config, request.stop_signal),
                                               request.stop_timeout)
    # What run was asked for: `start` runs the container again from it.
    record.run = containers.SavedRun(asdict(request), stage.number)  # stage 8
    container.save()
    events.of_container(paths, "create", record)  # stage 8: what `events` shows
    if request.cidfile is not None:
        try:
            # O_EXCL: of two runs given one file, one writes it; the other made its container for nothing.
            fd = os.open(request.cidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            containers.remove(paths, container)
            raise ContainerError(f"--cidfile {request.cidfile}: {exc.strerror}") from None
        with os.fdopen(fd, "w") as f:
            f.write(container.id)
    return container


def _run_once(paths: Paths, container: containers.Container, config: dict[str, Any], request: Request,
              client: runtime.Runtime, started: Any, keep_log: bool, server: Any = None) -> int:
    """Create, start and wait for the container once; return its exit code. ``keep_log``:
    a foreground run keeps a log too (stage 8); ``server``: the attach socket ``start -a`` made."""
    container_id = container.id
    # -a: the streams the terminal gets (docker's default: stdout and stderr, stdin with -i).
    shown = frozenset(request.streams or ["stdout", "stderr"]) - {"stdin"}
    interactive = request.interactive or "stdin" in request.streams
    detached = started is not None
    with ExitStack() as undo:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        undo.callback(os.close, null)
        # Without -i the container reads nothing, as with docker.
        stdin = 0 if interactive and not detached else null
        stdio = (stdin, 1 if "stdout" in shown else null, 2 if "stderr" in shown else null)
        if detached or keep_log:  # stage 8: the log's pipes, which pump reads
            out_read, out_write = os.pipe()
            err_read, err_write = os.pipe()
            for fd in (out_read, err_read):
                undo.callback(os.close, fd)
            stdio = (stdin, out_write, err_write)
        if detached:  # stage 8: the monitor's hub stands between the container and the log
            from mini_engine.containers import attach

            wiring = attach.Wiring(container.bundle, server, interactive, request.tty, (out_write, err_write))
            undo.callback(wiring.close)
            stdio = wiring.stdio
        # With -t the container's stdio is a terminal of its own, whose master
        # end the runtime hands us (runc's console socket).
        created = client.create(container_id, container.bundle, stdio, request.tty)
        undo.callback(client.delete, container_id, True)
        undo.callback(created.close)
        for fd in set(stdio) - {0, 1, 2, null}:
            os.close(fd)  # the container has its own copies now
        hub = wiring.start_hub(created) if detached else None  # stage 8

        # From here on a signal to the engine is the container's: forward it
        # before start, or one that comes early would kill the engine alone.
        with created.forwarding_signals():
            client.start(container_id)
            # The engine's pid and start time: `ps` and `prune` tell a container
            # some engine still waits for from one whose engine was killed.
            container.record.state = containers.State("running", created.pid, started_at=containers.now())
            container.record.state.stamp()
            container.save()
            events.of_container(paths, "start", container.record)  # stage 8
            try:
                created.wait_exec()
            except ContainerError as exc:
                _finish(container, exc.exit_code)
                raise
            if detached or keep_log:  # stage 8
                from mini_engine.containers import logfile, monitor

                log, options = os.path.join(container.bundle, "ctr.log"), logfile.parse_options(request.log_opt)
            if detached:  # stage 8
                started(container_id, container.bundle)
                monitor.pump(out_read, err_read, created.pid, log, options)
                assert hub is not None
                hub.join()
                created.close()  # the hub had the terminal: nothing is left to relay
            elif keep_log:  # stage 8: a foreground run's output to the terminal and its log
                monitor.pump(out_read, err_read, created.pid, log, options, echo=shown)
            code = created.wait(interactive)  # with -t, relaying the terminal meanwhile
        oom = _oom_killed(config)  # stage 3: was it the memory limit?
        _finish(container, code, oom)
        if oom:  # stage 8
            events.of_container(paths, "oom", container.record)
        events.of_container(paths, "die", container.record, exitCode=str(code))  # stage 8
        return code
# [/book:run]


def _connect(paths: Paths, container: containers.Container, options: spec.RunOptions, request: Request,
             undo: ExitStack) -> None:
    """Stage 7: the name files, and on a bridge the network namespace, wired before create."""
    from mini_engine.network import dns, networks

    bridge = None if options.netns is None else networks.lookup(paths, options.network)
    extra_hosts = dns.parse_add_hosts(request.add_host, bridge.gateway if bridge else None)
    if options.name_mounts:
        # On a user network the one nameserver is its DNS responder, which forwards
        # to the --dns servers what it does not answer itself.
        nameservers = [bridge.gateway] if bridge and networks.has_responder(bridge) else request.dns or None
        networks.write_name_files(container.bundle, options.network, options.hostname or container.id[:12],
                                  nameservers, request.dns_search or None, None if bridge else extra_hosts)
    if bridge is None:
        return
    names = list(dict.fromkeys(n for n in (request.name, container.id[:12], options.hostname,
                                           *request.network_alias) if n))
    details: dict[str, Any] = {}
    if request.dns and networks.has_responder(bridge):
        details["dns"] = request.dns
    if extra_hosts:
        details["extra_hosts"] = extra_hosts
    conn = networks.connect(paths, container.id, options.network, options.publish, names, request.ip, **details)
    undo.callback(networks.disconnect, paths, conn)
    container.record.network_settings = containers.NetworkSettings(
        conn.network.name, conn.address, conn.network.gateway,
        [f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.port}/{p.protocol}" for p in conn.published])
    container.save()


# [book:engine-create]
def create(paths: Paths, request: Request, stage: Stage, runtime_name: str | None = None) -> int:
    """``create``: the container made as ``run`` makes it (its bundle, its record, what run
    was asked), but not started; print its id. ``start`` runs it, as for an exited one."""
    if request.detach:
        raise ContainerError("create starts nothing, so -d means nothing: start it (start -a attaches)")
    check_flags(request, stage)
    settle(request)
    client = runtime.choose(paths, runtime_name)
    if request.name is not None:
        containers.check_name(paths, request.name)
    choice, options = resolve(paths, request, containers.new_id(), stage)
    if stage.has(CGROUPS):
        runtime.refuse_missing_controllers(options.resources)
    print(_new_container(paths, request, stage, choice, options, client).id)
    return 0
# [/book:engine-create]


# [book:engine-start]
def start(paths: Paths, name: str, announce: bool = True, attach_to: bool = False, stdin: bool = False,
          detach_keys: str = "ctrl-p,ctrl-q") -> int:
    """``start``: run a created or exited container, detached, as its ``run`` (or ``create``)
    asked. ``attach_to`` (``-a``): then attached to it, as ``attach``; its exit code."""
    from mini_engine.containers import attach, monitor
    from mini_engine.stages import resolve as resolve_stage

    attach.parse_detach_keys(detach_keys)  # refused before anything starts
    container = containers.claim(paths, name)
    saved = container.record.run
    if saved is None:
        raise ContainerError(f'container "{name}" was made before stage 8: it cannot be started again')
    request: Request = flags.from_json(Request, saved.request)
    stdin_once = not request.detach  # made by create: attached from its start, as docker's
    # create --rm: removed when it exits, the first time (later, there is nothing to start).
    request.rm = request.rm and container.record.state.status == "created"
    request.detach, request.streams = True, []
    request.pull, request.cidfile = "missing", None  # start pulls nothing, and wrote its id at run
    if container.record.image_id:
        # The image it was made from, by id: by now its tag may name another one,
        # whose layers would not fit the container's upper directory.
        request.args = [container.record.image_id, *request.args[1:]]
    stage = resolve_stage(str(saved.stage))
    # What an engine killed earlier may have left: the runtime's state. (Its
    # network lease goes in networks.connect, which reclaims dead engines' first.)
    client = runtime.of(paths, container.record.runtime)  # the runtime it was made with
    client.delete(container.id, force=True)
    choice, options = resolve(paths, request, container.id, stage)
    options.pod_id = options.pod_id or container.record.pod  # an infra container is in its pod's cgroup
    # -a: connected before the container starts, so that not a byte of its output is missed.
    server = attach.listen(container.bundle) if attach_to else None
    sock = attach.connect(container.bundle) if attach_to else None

    def take_over(started: Any) -> int:
        if sock is not None:
            sock.close()  # the command line's end: a copy here would keep it open after it leaves
        # `start` claimed it; its monitor (this process) takes the claim over.
        container.record.state.stamp()
        container.save()
        return _run(paths, request, stage, choice, options, client, started, container, server)

    try:
        monitor.detach(take_over, announce and not attach_to)
    finally:
        if server is not None:
            server.close()  # the monitor's copy listens
    if sock is None:
        return 0
    return attach.follow(paths, container.id, sock, stdin and request.interactive, request.tty, detach_keys,
                         stdin_once)
# [/book:engine-start]


def _restart_wanted(policy: str, code: int, restarts: int) -> bool:
    """docker's --restart: no, always, unless-stopped, on-failure[:N] (at most N restarts).
    unless-stopped is always here, as podman's: docker tells them apart when its daemon
    starts again, and this engine has no daemon; nothing of a container outlives its monitor."""
    kind, _, limit = policy.partition(":")
    if kind in ("always", "unless-stopped"):
        return True
    if kind == "on-failure" and code != 0:
        return not limit or restarts < int(limit)
    return False


def _stop(signum: int, _frame: object) -> None:
    name = signal.Signals(signum).name
    raise ContainerError(f"stopped by {name}", 128 + signum)


def _oom_killed(config: dict[str, Any]) -> bool:
    """Ask the cgroup, before it goes, whether the kernel's OOM killer struck."""
    path = runtime.cgroup_path(config)
    if not path or not runtime.oom_killed(path):
        return False
    limit = config["linux"]["resources"].get("memory", {}).get("limit")
    print(f"mini-engine: the kernel's OOM killer killed a process of this container "
          f"(memory.max={limit})", file=sys.stderr)
    return True


def _finish(container: containers.Container, code: int, oom: bool = False) -> None:
    containers.reread(container)  # a rename, an update meanwhile stay
    state = container.record.state
    state.status, state.exit_code, state.oom_killed, state.finished_at = "exited", code, oom, containers.now()
    container.save()
