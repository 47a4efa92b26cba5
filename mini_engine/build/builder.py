"""``mini-engine build``: a Containerfile, one instruction at a time, into an image.

Chapter 09 reads this module. Spec: image-spec config.md (``config``,
``rootfs.diff_ids``, ``history``) and manifest.md; the Dockerfile reference
for what each instruction does. buildah (``buildah bud``) is the twin.

A build is a chain of containers. Each stage starts from an image (or
from nothing, ``scratch``, or from an earlier stage). Each instruction that
changes files (RUN, COPY, ADD, WORKDIR) gets a *working container*: an
overlay of the layers so far with an empty upper directory (chapter 04).
RUN runs its command there, through the engine's own runtime, with the
security defaults of every container (chapter 06) and no network unless
asked; COPY and ADD write into it. The upper
directory is then exactly the step's change, and ``diff.py`` turns it into
the next layer, which goes into the store like any pulled one (chapter 05);
an upper left empty (WORKDIR of a directory that was there) makes none.
The other instructions only change the image's config.

Each layer is remembered under a key: the key of the step before it, the
instruction, and for COPY and ADD the content of the files. The same key
next time means the same layer: "Using cache", and no container at all.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from mini_engine.base import files
from mini_engine.base.errors import ContainerError
from mini_engine.build import containerfile as cf
from mini_engine.build import copy as copying
from mini_engine.build.containerfile import BUILD_FAILED, Instruction
from mini_engine.build.diff import LAYER_GZIP, write_layer
from mini_engine.config import spec
from mini_engine.containers import record as containers
from mini_engine.containers import runtime
from mini_engine.images import imageconfig
from mini_engine.images.store import CONFIG_OCI, MANIFEST_OCI, BlobWriter, Descriptor, Store
from mini_engine.paths import Paths
from mini_engine.stages import Stage

DEFAULT_SHELL = ["/bin/sh", "-c"]
NOP = "/bin/sh -c #(nop) "  # how docker and buildah write a step that ran nothing
NETWORKS = ("none", "host")


class BuildError(ContainerError):
    """A step failed; the message names the Containerfile's line. Exit 1, as docker build."""

    def __init__(self, message: str) -> None:
        super().__init__(message, BUILD_FAILED)


@dataclass
class Options:
    """The command line of ``build``."""

    context: str
    file: str | None = None
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    network: str = "none"
    quiet: bool = False
    platform: str | None = None


@dataclass
class StageState:
    """A stage being built: its image config so far, its layers, and its variables."""

    index: int
    name: str | None
    config: dict[str, Any]              # the image config (config.md): "config", "history"...
    layers: list[dict[str, Any]]        # manifest descriptors, each with its diffID
    key: str                            # the cache's chain: what every step so far was
    args: dict[str, str] = field(default_factory=dict)   # ARG values in scope
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))
    cmd_set: bool = False               # CMD given in this stage (ENTRYPOINT keeps it then)

    @property
    def image(self) -> dict[str, Any]:
        block: dict[str, Any] = self.config.setdefault("config", {})
        return block

    def env(self) -> dict[str, str]:
        return dict(item.partition("=")[::2] for item in self.image.get("Env") or [])

    def variables(self) -> dict[str, str]:
        """What ``$VAR`` means in this stage: ARG values, ENV winning over them."""
        return {**self.args, **self.env()}


def _complete_history(config: dict[str, Any], layers: int) -> None:
    """A line of history for each base layer that has none (the bundled busybox has
    none at all): buildah refuses to build on an image whose history names
    fewer layers than it has, and so would refuse ours."""
    history = config.get("history") or []
    missing = layers - sum(not entry.get("empty_layer") for entry in history)
    if missing > 0:
        config["history"] = [{"created": config.get("created", "1970-01-01T00:00:00Z"),
                              "created_by": "(a layer of the base image, with no history of its own)"}
                             for _ in range(missing)] + history


def _chain(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def build(paths: Paths, stage: Stage, options: Options) -> str:
    """Build the Containerfile in ``options``; return the new image's id."""
    context = os.path.abspath(options.context)
    if not os.path.isdir(context):
        raise BuildError(f"build context {options.context}: no such directory")
    filename = options.file or _default_file(context)
    try:
        with open(filename) as f:
            parsed = cf.parse(f.read(), os.path.basename(filename))
    except OSError as exc:
        raise BuildError(f"{filename}: {exc.strerror}") from None
    builder = Builder(paths, stage, options, context, parsed, cf.read_ignore_file(context, filename))
    return builder.run()


def _default_file(context: str) -> str:
    for name in ("Containerfile", "Dockerfile"):
        if os.path.exists(os.path.join(context, name)):
            return os.path.join(context, name)
    raise BuildError(f"no Containerfile or Dockerfile in {context}: give one with -f")


class Builder:
    def __init__(self, paths: Paths, stage: Stage, options: Options, context: str,
                 parsed: cf.Containerfile, patterns: list[cf.Pattern]) -> None:
        self.paths, self.stage, self.options = paths, stage, options
        self.context, self.parsed, self.patterns = context, parsed, patterns
        self.store = Store(paths.root)
        self.epoch = epoch()
        self.created = timestamp(self.epoch)
        self.stages: list[StageState] = []
        self.used_args: set[str] = set()
        if options.network not in NETWORKS:
            raise BuildError(f"--network {options.network}: a build runs with none (the default) or host")
        host = imageconfig.host_platform()
        wanted = options.platform.split("/")[:2] if options.platform is not None else None
        if wanted is not None and wanted != [host["os"], host["architecture"]]:
            # Every RUN executes here, natively: another machine's programs would need an emulator.
            raise ContainerError(f"--platform {options.platform}: this engine builds for this machine only "
                                 f"({host['os']}/{host['architecture']})")

    def say(self, text: str) -> None:
        if not self.options.quiet:
            print(text, flush=True)

    # [book:builder-run]
    def run(self) -> str:
        """Every stage up to the target, in order; then the target is committed."""
        instructions = self.parsed.instructions
        stage_starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
        if not stage_starts:
            raise BuildError(f"{self.parsed.filename}: no FROM instruction")
        global_args = self._global_args(instructions[:stage_starts[0]])
        last = self._target_index(instructions, stage_starts, global_args)
        total = stage_starts[last + 1] if last + 1 < len(stage_starts) else len(instructions)
        state: StageState | None = None
        for number, instruction in enumerate(instructions[:total], 1):
            if number <= stage_starts[0]:
                continue  # the ARGs before the first FROM: read above
            self.say(f"STEP {number}/{total}: {instruction}")
            if instruction.keyword == "FROM":
                state = self._from(instruction, global_args)
                self.stages.append(state)
                continue
            assert state is not None
            self._step(state, instruction)
        assert state is not None
        unused = set(self.options.build_args) - self.used_args
        if unused:
            print(f"mini-engine: [Warning] build-args not consumed: {', '.join(sorted(unused))}",
                  file=sys.stderr)
        return self._commit(state)
    # [/book:builder-run]

    def _global_args(self, instructions: list[Instruction]) -> dict[str, str]:
        """ARG before the first FROM: usable in FROM lines, and by ARG NAME in a stage."""
        found: dict[str, str] = {}
        for instruction in instructions:
            for name, value in self._arg_values(instruction, found):
                found[name] = value
        return found

    def _target_index(self, instructions: list[Instruction], starts: list[int],
                      global_args: dict[str, str]) -> int:
        if self.options.target is None:
            return len(starts) - 1
        for n, start in enumerate(starts):
            _, name = cf.stage_name(instructions[start], global_args, self.parsed.escape)
            if name == self.options.target.lower():
                return n
        raise BuildError(f"--target {self.options.target}: no stage of that name in {self.parsed.filename}")

    # -- FROM ----------------------------------------------------------------

    # [book:from]
    def _from(self, instruction: Instruction, global_args: dict[str, str]) -> StageState:
        base, name = cf.stage_name(instruction, global_args, self.parsed.escape)
        index = len(self.stages)
        earlier = self._stage_named(base)
        if earlier is not None:  # FROM an earlier stage: go on from where it ended
            config = json.loads(json.dumps(earlier.config))
            return StageState(index, name, config, list(earlier.layers), _chain("stage", earlier.key))
        if base == "scratch":
            platform = imageconfig.host_platform()
            config = {"architecture": platform["architecture"], "os": platform["os"], "config": {}}
            return StageState(index, name, config, [], _chain("scratch"))
        image_id, config, layers = self._image(instruction, base)
        _complete_history(config, len(layers))
        config = {k: v for k, v in config.items() if k not in ("created", "author", "container",
                                                               "container_config", "docker_version")}
        return StageState(index, name, config, layers, _chain("image", image_id))
    # [/book:from]

    def _stage_named(self, name: str) -> StageState | None:
        for state in self.stages:
            if state.name == name.lower() or str(state.index) == name:
                return state
        return None

    def _image(self, instruction: Instruction, name: str) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
        """An image from the store (pulled if it is not there), as run finds one."""
        from mini_engine.containers.run import choose_image
        from mini_engine.images.store import parse_json

        try:
            choice = choose_image(self.paths, name, self.stage)
        except ContainerError as exc:
            raise BuildError(f"{instruction.where}: {instruction.keyword} {name}: {exc}") from None
        assert choice.image_id is not None
        record = self.store.image(choice.image_id)
        config = parse_json(self.store.read_blob(choice.image_id), "image config")
        return choice.image_id, config, [dict(layer) for layer in record["Layers"]]

    # -- the other instructions -----------------------------------------------

    def _step(self, state: StageState, instruction: Instruction) -> None:
        try:
            handler = getattr(self, f"_{instruction.keyword.lower()}")
            handler(state, instruction)
        except copying.CopyError as exc:
            raise BuildError(f"{instruction.where}: {instruction.keyword}: {exc}") from None
        except (BuildError, cf.ContainerfileError):
            raise
        except ContainerError as exc:
            raise BuildError(f"{instruction.where}: {instruction.keyword}: {exc}") from None

    def _config_step(self, state: StageState, instruction: Instruction, text: str | None = None) -> None:
        """A step that only changes the config: history says so, no layer."""
        written = text if text is not None else str(instruction)
        state.key = _chain(state.key, written)
        self._history(state, f"{NOP}{written}", empty=True)

    def _history(self, state: StageState, created_by: str, empty: bool) -> None:
        entry: dict[str, Any] = {"created": self.created, "created_by": created_by}
        if empty:
            entry["empty_layer"] = True
        state.config.setdefault("history", []).append(entry)

    def _arg_values(self, instruction: Instruction, scope: dict[str, str]) -> list[tuple[str, str]]:
        out = []
        for item in cf.substitute(instruction, scope, self.parsed.escape):
            name, equals, default = item.partition("=")
            if not cf.NAME.fullmatch(name):
                raise instruction.error(f"invalid argument name {name!r}")
            if name in self.options.build_args:
                self.used_args.add(name)
                value = self.options.build_args[name]
            elif equals:
                value = default
            elif name in scope:
                value = scope[name]
            else:
                continue  # declared, no value: unset, as docker leaves it
            out.append((name, value))
        return out

    def _arg(self, state: StageState, instruction: Instruction) -> None:
        # ARG NAME without a value takes the one an ARG before the first FROM gave.
        for name, value in self._arg_values(instruction, {**self._globals(), **state.variables()}):
            state.args[name] = value
        self._config_step(state, instruction, f"ARG {instruction.text}")
        # The value is part of the chain: another --build-arg is another build.
        state.key = _chain(state.key, json.dumps(sorted(state.args.items())))

    def _globals(self) -> dict[str, str]:
        first = next(i for i, ins in enumerate(self.parsed.instructions) if ins.keyword == "FROM")
        return self._global_args(self.parsed.instructions[:first])

    def _env(self, state: StageState, instruction: Instruction) -> None:
        pairs = cf.key_values(instruction, state.variables(), self.parsed.escape)
        state.image["Env"] = spec.merge_env(state.image.get("Env") or [], [f"{k}={v}" for k, v in pairs])
        self._config_step(state, instruction, "ENV " + " ".join(f"{k}={v}" for k, v in pairs))

    def _label(self, state: StageState, instruction: Instruction) -> None:
        pairs = cf.key_values(instruction, state.variables(), self.parsed.escape)
        labels = state.image.setdefault("Labels", {})
        labels.update(pairs)
        self._config_step(state, instruction, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs))

    def _user(self, state: StageState, instruction: Instruction) -> None:
        (user,) = cf.substitute(instruction, state.variables(), self.parsed.escape, split=False)
        state.image["User"] = user
        self._config_step(state, instruction, f"USER {user}")

    def _stopsignal(self, state: StageState, instruction: Instruction) -> None:
        (signal,) = cf.substitute(instruction, state.variables(), self.parsed.escape, split=False)
        state.image["StopSignal"] = signal
        self._config_step(state, instruction, f"STOPSIGNAL {signal}")

    def _expose(self, state: StageState, instruction: Instruction) -> None:
        ports = state.image.setdefault("ExposedPorts", {})
        for port in cf.substitute(instruction, state.variables(), self.parsed.escape):
            number, _, protocol = port.partition("/")
            if not number.isdigit() or protocol not in ("", "tcp", "udp", "sctp"):
                raise instruction.error(f"invalid port {port!r}: expected PORT[/tcp|udp|sctp]")
            ports[f"{int(number)}/{protocol or 'tcp'}"] = {}
        self._config_step(state, instruction, f"EXPOSE {' '.join(sorted(ports))}")

    def _volume(self, state: StageState, instruction: Instruction) -> None:
        volumes = state.image.setdefault("Volumes", {})
        for path in cf.substitute(instruction, state.variables(), self.parsed.escape):
            volumes[path] = {}
        self._config_step(state, instruction)

    def _shell(self, state: StageState, instruction: Instruction) -> None:
        assert instruction.exec_form is not None
        if not instruction.exec_form:
            raise instruction.error("the shell must have at least one word")
        state.shell = list(instruction.exec_form)
        self._config_step(state, instruction)

    def _command(self, state: StageState, instruction: Instruction) -> list[str]:
        if instruction.exec_form is not None:
            return list(instruction.exec_form)
        return [*state.shell, instruction.text] if instruction.text else []

    def _cmd(self, state: StageState, instruction: Instruction) -> None:
        state.image["Cmd"] = self._command(state, instruction)
        state.cmd_set = True
        self._config_step(state, instruction, f"CMD {json.dumps(state.image['Cmd'])}")

    def _entrypoint(self, state: StageState, instruction: Instruction) -> None:
        state.image["Entrypoint"] = self._command(state, instruction)
        if not state.cmd_set:
            # docker: an ENTRYPOINT drops the Cmd it inherited, meant for the old one
            state.image.pop("Cmd", None)
        self._config_step(state, instruction, f"ENTRYPOINT {json.dumps(state.image['Entrypoint'])}")

    def _workdir(self, state: StageState, instruction: Instruction) -> None:
        (path,) = cf.substitute(instruction, state.variables(), self.parsed.escape, split=False)
        previous = state.image.get("WorkingDir") or "/"
        state.image["WorkingDir"] = os.path.normpath(os.path.join(previous, path))
        # The directory is made now if it is missing: a layer of its own, as buildah and BuildKit make it.
        key = _chain(state.key, f"WORKDIR {state.image['WorkingDir']}")
        self._layer_step(state, instruction, key, f"{NOP}WORKDIR {state.image['WorkingDir']}",
                         lambda rootfs: copying.makedirs(rootfs, state.image["WorkingDir"]))

    # -- steps that make layers ----------------------------------------------

    # [book:run-step]
    def _run(self, state: StageState, instruction: Instruction) -> None:
        argv = self._command(state, instruction)
        if not argv:
            raise instruction.error("nothing to run")
        network = instruction.flags.get("network", self.options.network)
        if network not in NETWORKS:
            raise instruction.error(f"--network={network}: a build runs with none or host")
        # ARG values are in the command's environment, not in the image's.
        args = {k: v for k, v in state.args.items() if k not in state.env()}
        prefix = f"|{len(args)} {' '.join(f'{k}={v}' for k, v in sorted(args.items()))} " if args else ""
        created_by = prefix + " ".join(argv)
        key = _chain(state.key, "RUN", json.dumps(argv), json.dumps(sorted(args.items())), network)

        def run(rootfs: str, container: containers.Container) -> None:
            code = self._run_container(state, container, argv, args, network)
            if code != 0:
                raise BuildError(f"{instruction.where}: RUN {instruction.text}: exited with code {code}")

        self._layer_step(state, instruction, key, created_by, None, run)
    # [/book:run-step]

    def _copy(self, state: StageState, instruction: Instruction) -> None:
        self._copy_or_add(state, instruction, unpack=False)

    def _add(self, state: StageState, instruction: Instruction) -> None:
        self._copy_or_add(state, instruction, unpack=True)

    def _copy_or_add(self, state: StageState, instruction: Instruction, unpack: bool) -> None:
        items = cf.substitute(instruction, state.variables(), self.parsed.escape)
        if len(items) < 2:
            raise instruction.error("needs a source and a destination")
        specs, dest = items[:-1], items[-1]
        if unpack and any("://" in s for s in specs):
            raise instruction.error("ADD of a URL is not supported (a build has no network): "
                                    "download it into the context, or RUN wget")
        owner = self._owner(state, instruction)
        with ExitStack() as undo:
            source_root, inside_image, origin = self._copy_root(state, instruction, undo)
            found = copying.sources(source_root, specs, self.patterns, inside_image)
            content = copying.content_hash(found, self.patterns, inside_image)
            workdir = state.image.get("WorkingDir") or "/"
            key = _chain(state.key, instruction.keyword, origin, content, json.dumps(items),
                         workdir, json.dumps(instruction.flags, sort_keys=True))
            created_by = f"{NOP}{instruction.keyword} {content[:19]} in {dest}"
            self._layer_step(state, instruction, key, created_by, lambda rootfs: copying.copy_into(
                rootfs, found, dest, workdir, owner, self.patterns, inside_image, unpack))
    def _copy_root(self, state: StageState, instruction: Instruction,
                   undo: ExitStack) -> tuple[str, bool, str]:
        """Where COPY reads: the context, or (``--from``) an earlier stage or an image, mounted."""
        source = instruction.flags.get("from")
        if source is None:
            return self.context, False, "context"
        if source == state.name or source == str(state.index):
            raise instruction.error(f"--from={source} names this very stage")
        earlier = self._stage_named(source)
        if earlier is not None:
            layers, origin = earlier.layers, f"stage {earlier.key}"
        else:
            image_id, _, layers = self._image(instruction, source)
            origin = f"image {image_id}"
        container = undo.enter_context(self._working_container(layers))
        return os.path.join(container.bundle, "rootfs"), True, origin

    def _owner(self, state: StageState, instruction: Instruction) -> copying.Owner:
        owner = copying.Owner()
        chmod = instruction.flags.get("chmod")
        if chmod is not None:
            try:
                owner.mode = int(chmod, 8)
            except ValueError:
                raise instruction.error(f"--chmod={chmod}: expected octal digits") from None
        chown = instruction.flags.get("chown")
        if chown:
            chown = "".join(cf.words(chown, state.variables(), self.parsed.escape, split=False))
            lowers = self._lower_paths(state.layers)
            user = imageconfig.resolve_user(chown, imageconfig.read_image_file(lowers, "etc/passwd"),
                                            imageconfig.read_image_file(lowers, "etc/group"))
            # docker: "a UID without GID will use the same numeric UID as the GID"
            owner.uid, owner.gid = user.uid, (user.gid if ":" in chown else user.uid)
            owner.chown = True
        return owner

    # [book:layer-step]
    def _layer_step(self, state: StageState, instruction: Instruction, key: str, created_by: str,
                    change: Any = None, run: Any = None) -> None:
        """A step that may change files: from the cache, or in a working container
        whose upper directory becomes the layer. ``change(rootfs)`` writes files;
        ``run(rootfs, container)`` runs a command."""
        cached = None if self.options.no_cache else self._cached(key)
        if cached is not None:
            self.say(f"--> Using cache {cached.get('diffID', 'sha256:(no layer)')[7:19]}")
        else:
            with self._working_container(state.layers) as container:
                rootfs = os.path.join(container.bundle, "rootfs")
                workdir = state.image.get("WorkingDir")
                if workdir and run is not None:
                    copying.makedirs(rootfs, workdir)  # docker makes a missing one for RUN
                if change is not None:
                    change(rootfs)
                if run is not None:
                    run(rootfs, container)
                containers.unmount_rootfs(container)  # upper is whole once the overlay is gone
                cached = store_layer(self.store, os.path.join(container.bundle, "upper"), self.epoch)
            self._remember(key, cached)
        state.key = key
        if cached.get("diffID"):
            state.layers.append(cached)
            self._history(state, created_by, empty=False)
        else:
            self._history(state, created_by, empty=True)
    # [/book:layer-step]

    def _cache_file(self, key: str) -> str:
        return os.path.join(self.paths.root, "build-cache", f"{key}.json")

    def _cached(self, key: str) -> dict[str, Any] | None:
        try:
            with open(self._cache_file(key)) as f:
                entry: dict[str, Any] = json.load(f)
        except (OSError, ValueError):
            return None
        if entry and not (self.store.has_layer(entry["diffID"]) and self.store.has_blob(entry["digest"])):
            os.unlink(self._cache_file(key))  # its layer was pruned since: build it again
            return None
        return entry

    def _remember(self, key: str, entry: dict[str, Any]) -> None:
        os.makedirs(os.path.dirname(self._cache_file(key)), mode=0o700, exist_ok=True)
        files.write_json(self._cache_file(key), entry)

    # -- working containers ----------------------------------------------------

    def _lower_paths(self, layers: list[dict[str, Any]]) -> list[str]:
        return [os.path.join(self.paths.root, self.store.short_link(layer["diffID"]))
                for layer in reversed(layers)]

    # [book:working-container]
    @contextmanager
    def _working_container(self, layers: list[dict[str, Any]]) -> Iterator[containers.Container]:
        """A container of the engine's (``ps -a`` shows it meanwhile) with the layers
        mounted below an empty upper: removed, mount and all, whatever happens."""
        lowers: list[str] = []
        for layer in reversed(layers):  # top first
            link = self.store.short_link(layer["diffID"])
            if link not in lowers:
                lowers.append(link)
        container_id = containers.new_id()
        container = containers.create(self.paths, container_id, "(build)", None, self.stage, lowers)
        try:
            if not lowers:  # scratch: overlayfs needs one lower directory, so an empty one
                os.mkdir(os.path.join(container.bundle, "empty"), 0o755)
                container.record.lowers = [os.path.relpath(os.path.join(container.bundle, "empty"),
                                                           self.paths.root)]
                container.save()
            containers.mount_rootfs(self.paths, container)
            yield container
        finally:
            containers.remove(self.paths, container)
    # [/book:working-container]

    # [book:run-container]
    def _run_container(self, state: StageState, container: containers.Container, argv: list[str],
                       args: dict[str, str], network: str) -> int:
        """RUN's command in the working container, through the runtime like any
        container's: the stage's namespaces, cgroup, capabilities, seccomp."""
        lowers = self._lower_paths(state.layers)
        user = imageconfig.resolve_user(state.image.get("User"),
                                        imageconfig.read_image_file(lowers, "etc/passwd"),
                                        imageconfig.read_image_file(lowers, "etc/group"))
        options = spec.RunOptions(
            container_id=container.id, command=argv,
            image_env=list(state.image.get("Env") or []),
            env=[f"{k}={v}" for k, v in args.items()],
            workdir=state.image.get("WorkingDir") or None,
            user=user.to_spec(), home=user.home, network=network)
        config = spec.build(options, self.stage)
        containers.write_config(container, config)
        client = runtime.choose(self.paths, None)
        stdin = os.open(os.devnull, os.O_RDONLY)
        with ExitStack() as undo:
            undo.callback(os.close, stdin)
            created = client.create(container.id, container.bundle, (stdin, 1, 2), False)
            undo.callback(client.delete, container.id, True)
            undo.callback(created.close)
            with created.forwarding_signals():
                client.start(container.id)
                created.wait_exec()
                return created.wait()
    # [/book:run-container]

    # -- the image -------------------------------------------------------------

    def _commit(self, state: StageState) -> str:
        """The config and manifest into the store, and the names on them."""
        config = dict(state.config)
        config["created"] = self.created
        config["rootfs"] = {"type": "layers", "diff_ids": [layer["diffID"] for layer in state.layers]}
        config.setdefault("history", [])
        first: tuple[str, ...] = ("created", "architecture", "os", "config", "rootfs", "history")
        ordered = {k: config[k] for k in first if k in config}
        ordered.update({k: v for k, v in config.items() if k not in ordered})
        return commit_image(self.store, ordered, state.layers, self.options.tags, self.say)

# [book:store-layer]
def store_layer(store: Store, upper: str, epoch: int | None) -> dict[str, Any]:
    """An upper directory, as a layer in the store (blob and unpacked); {} if it is empty."""
    if not os.listdir(upper):
        return {}
    with BlobWriter(store, None) as out:
        written = write_layer(upper, out, epoch)  # type: ignore[arg-type]
    blob = Descriptor(LAYER_GZIP, written.digest, written.size)
    # Unpacked from the tar, by chapter 05's rules, like any layer pulled:
    # the next step sees exactly what the image will ship.
    store.ensure_layer(blob, written.diff_id)
    return dict(blob.to_json(), diffID=written.diff_id)
# [/book:store-layer]


def commit_image(store: Store, config: dict[str, Any], layers: list[dict[str, Any]], tags: list[str],
                 say: Any = print) -> str:
    """Write ``config`` and its manifest to the store and name the image ``tags``."""
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    with store.lock():
        config_desc = store.put_bytes(config_bytes, CONFIG_OCI)
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_OCI, "config": config_desc.to_json(),
                    "layers": [{"mediaType": layer["mediaType"], "digest": layer["digest"],
                                "size": layer["size"]} for layer in layers]}
        manifest_desc = store.put_bytes(json.dumps(manifest, separators=(",", ":")).encode(), MANIFEST_OCI)
        store.add_image(manifest_desc.digest, tags)
    for tag in tags:
        say(f"Successfully tagged {store.normal_name(tag)}")
    print(config_desc.digest)
    return config_desc.digest


def epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise BuildError(f"SOURCE_DATE_EPOCH={value!r}: expected seconds since 1970")
    return int(value)


def timestamp(seconds: int | None) -> str:
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC) if seconds is not None \
        else datetime.datetime.now(datetime.UTC)
    return when.isoformat().replace("+00:00", "Z")
