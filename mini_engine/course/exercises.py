"""The exercises of the student edition: which function of which stage a learner writes.

Each exercise is one whole teaching function that a chapter shows (in a
``# [book:...]`` region or with ``:pyobject:``). ``mini-engine course export``
replaces its body by a stub that keeps its signature and docstring and points
to the chapter's section; ``mini-engine grade`` runs the stage's tests, and
``mini-engine hint ID [N]`` shows the hints, one tier at a time: 1 the idea,
2 the man page or spec and the system calls, 3 near-code.

``checks`` name the tests that fail while the exercise is a stub (the test
suite proves it, exercise by exercise, in tests/test_course.py); the
grader runs every test of the stage, not only these.

The runtime chapter's own exercise is graded as the unit ``runtime``: the
tests of mini-runc's command line, after stages 0-2.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

# The grading units, in the book's order. The runtime chapter (mini-runc on
# its own) needs the process, the root and the namespaces: stages 0-2.
UNITS: tuple[int | str, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, "runtime")
PREREQUISITES: dict[int | str, tuple[int | str, ...]] = {
    **{n: tuple(range(n)) for n in range(9)},
    "runtime": (0, 1, 2),
}


def sealed(text: str) -> tuple[str, str, str]:
    """An exercise's hints as the student edition keeps them (course/student.py
    seals them): base64, so that a learner's grep of the tree for a function
    does not show its near-code before they ask ``mini-engine hint``."""
    first, second, third = json.loads(base64.b64decode(text))
    return first, second, third


@dataclass(frozen=True)
class Exercise:
    id: str
    stage: int | str          # a number of the stage ladder, or "runtime"
    file: str                 # from the repository's top
    function: str             # "name", or "Class.method"
    chapter: str
    section: str              # the heading under which the chapter shows it
    difficulty: str           # easy, moderate, hard (xv6's words)
    minutes: int              # a first estimate, for a learner who read the section
    hints: tuple[str, str, str]
    checks: tuple[str, ...]   # pytest node ids that fail without it


EXERCISES: tuple[Exercise, ...] = (
    # Stage 0: a container is a process.
    Exercise(
        "exit-code", 0, "mini_engine/runtime/process.py", "exit_code",
        "chapters/00-process.md", "Exit codes", "easy", 10,
        ("The kernel hands back a wait status, not an exit code: it says either "
         "'exited with N' or 'killed by signal N'. The shell, and docker after it, "
         "print 128+N for a process killed by signal N.",
         "wait(2), 'WIFEXITED, WIFSIGNALED'; Python: os.WIFSIGNALED, os.WTERMSIG, "
         "os.waitstatus_to_exitcode.",
         "if os.WIFSIGNALED(status): return 128 + os.WTERMSIG(status); "
         "otherwise return os.waitstatus_to_exitcode(status)."),
        ("tests/test_stage0_process.py::test_exit_code_is_passed_through",
         "tests/test_stage0_process.py::test_killed_by_a_signal_is_128_plus_n"),
    ),
    Exercise(
        "find-executable", 0, "mini_engine/runtime/process.py", "find_executable",
        "chapters/00-process.md", "exec", "moderate", 20,
        ("A name with a '/' is a path, taken as it is; a bare name is looked up in "
         "each directory of the container's PATH, in order, as execvp(3) does. What "
         "is not found is docker's 127, what is there but may not run is 126.",
         "execvp(3), 'If the specified filename does not contain a slash'; "
         "os.path.isfile, os.access(path, os.X_OK); exec_error() below turns an "
         "OSError (ENOENT or EACCES) into the right ContainerError.",
         "candidates = [name] if '/' in name else [os.path.join(d or '.', name) for d in "
         "search.split(':')]; return the first regular file with X_OK; remember EACCES "
         "for a file (or, for a path, a directory) you may not run; at the end raise "
         "exec_error(name, that OSError or ENOENT's)."),
        ("tests/test_stage0_process.py::test_output_and_success",
         "tests/test_errors.py::test_command_not_found_is_127"),
    ),
    Exercise(
        "forward-signals", 0, "mini_engine/runtime/process.py", "forwarding_signals",
        "chapters/00-process.md", "Signals", "moderate", 20,
        ("While the engine waits for the container, a Ctrl-C or a kill sent to the "
         "engine must reach the container's process instead of ending the engine. "
         "Install a handler for each of FORWARDED_SIGNALS that passes the signal on, "
         "and put the old handlers back afterwards, whatever happens.",
         "signal(7), kill(2); Python: signal.signal returns the previous handler; "
         "os.kill; ProcessLookupError when the process has already gone. This is a "
         "generator under @contextmanager: yield once, restore in finally.",
         "def forward(signum, _frame): try os.kill(pid, signum) except "
         "ProcessLookupError: pass; previous = {sig: signal.signal(sig, forward) for sig "
         "in FORWARDED_SIGNALS}; try: yield; finally: signal.signal(sig, handler) for each."),
        ("tests/test_stage0_process.py::test_signals_to_the_engine_reach_the_container",),
    ),
    Exercise(
        "exec-fifo", 0, "mini_engine/runtime/lifecycle.py", "start",
        "chapters/00-process.md", "start", "moderate", 20,
        ("create leaves the container's process set up and blocked reading the exec "
         "fifo in the container's state directory; start lets it go by writing one "
         "byte into that fifo, then removes the fifo, so that the state says "
         "'running' from then on.",
         "fifo(7), open(2) with O_WRONLY|O_NONBLOCK: ENXIO when no process has the fifo "
         "open for reading (the container is gone, fail at once instead of blocking); "
         "state.container_dir, state.status, state.todo; the OCI runtime spec, "
         "runtime.md 'start'.",
         "fifo = os.path.join(state.container_dir(state_root, container_id), 'exec.fifo'); "
         "fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC) (FileNotFoundError: "
         "say the status; OSError: not waiting); run _prestart if 'prestart' in "
         "state.todo(...); os.write(fd, b'\\0'); close; os.unlink(fifo); warn on poststart hooks."),
        ("tests/test_stage0_process.py::test_output_and_success",),
    ),
    # Stage 1: a root filesystem of its own.
    Exercise(
        "chroot", 1, "mini_engine/runtime/chroot.py", "enter_chroot",
        "chapters/01-chroot.md", "What chroot changes, and what it does not", "easy", 10,
        ("chroot changes where path lookups starting at '/' begin, and nothing else: "
         "not even the working directory, which would stay outside the new root.",
         "chroot(2) (NOTES: 'This call does not change the current working directory'), "
         "chdir(2); Python: os.chroot, os.chdir.",
         "os.chroot(root), then os.chdir('/')."),
        ("tests/test_stage1_chroot.py::test_the_root_is_the_image",
         "tests/test_stage1_chroot.py::test_enter_chroot_alone_closes_the_door"),
    ),
    # Stage 2: namespaces.
    Exercise(
        "enter-namespaces", 2, "mini_engine/runtime/namespaces.py", "enter_namespaces",
        "chapters/02-namespaces.md", "The order of things", "hard", 45,
        ("Each namespace config.json lists is either joined (it has a path) or made new. "
         "The user namespace comes first, since it owns every other; the engine writes "
         "its maps from outside while you wait. Then one unshare(2) for all the new "
         "ones; a new time namespace gets its offsets, a new network namespace its lo "
         "up, and a new user namespace makes us its root last.",
         "namespaces(7), unshare(2), setns(2), user_namespaces(7); CLONE_FLAGS maps a kind "
         "to its CLONE_NEW* flag; _join(path, kind); syscalls.unshare; parent.send("
         "type='userns') and parent.recv() == {'type': 'ack'}; set_time_offsets, "
         "bring_up_loopback, become_root.",
         "wanted = listed_namespaces(config); if 'user' in wanted: join it, or join the "
         "other paths first, unshare(CLONE_NEWUSER), send userns, wait for ack; "
         "new = OR of CLONE_FLAGS[kind] for the rest without a path (join those with one); "
         "syscalls.unshare(new); then time offsets, loopback, become_root()."),
        ("tests/test_stage2_namespaces.py::test_the_command_is_pid_1",
         "tests/test_stage2_namespaces.py::test_each_container_has_its_own"),
    ),
    Exercise(
        "id-maps", 2, "mini_engine/runtime/namespaces.py", "write_id_maps",
        "chapters/02-namespaces.md", "The ID maps", "moderate", 15,
        ("A new user namespace maps nobody until a process outside it writes its "
         "uid_map and gid_map: one line per range, 'inside outside count', all "
         "in a single write, once.",
         "user_namespaces(7), 'User and group ID mappings: uid_map and gid_map'; "
         "config.json's linux.uidMappings and linux.gidMappings (containerID, hostID, size).",
         "for key, name in (('uidMappings', 'uid_map'), ('gidMappings', 'gid_map')): "
         "refuse a missing map with a ContainerError; write "
         "''.join(f\"{m['containerID']} {m['hostID']} {m['size']}\\n\" ...) to "
         "f'/proc/{pid}/{name}' in one write."),
        ("tests/test_stage2_namespaces.py::test_user_namespace_maps_root_to_an_unprivileged_range",),
    ),
    Exercise(
        "pivot-root", 2, "mini_engine/runtime/mounts.py", "pivot_into",
        "chapters/02-namespaces.md", "pivot_root", "moderate", 20,
        ("Unlike chroot, pivot_root swaps the root mount of the mount namespace, and "
         "the old root can then be unmounted, so that nothing of the host is left to "
         "walk to. The trick: pivot_root('.', '.') from inside the new root stacks the "
         "old root on top of it, and a lazy unmount of '.' takes it off.",
         "pivot_root(2), NOTES ('pivot_root(\".\", \".\")'), umount2(2) with MNT_DETACH; "
         "syscalls.pivot_root, syscalls.umount2.",
         "os.chdir(root); syscalls.pivot_root('.', '.'); syscalls.umount2('.', MNT_DETACH); "
         "os.chdir('/')."),
        ("tests/test_stage2_namespaces.py::test_the_mount_table",),
    ),
    Exercise(
        "devices", 2, "mini_engine/runtime/mounts.py", "create_devices",
        "chapters/02-namespaces.md", "/dev", "moderate", 20,
        ("The container's /dev is a fresh tmpfs: fill it with the default character "
         "devices (null, zero, full, random, urandom, tty) and the usual symlinks. Inside "
         "a user namespace mknod is refused, so bind-mount the host's nodes instead.",
         "mknod(2) with S_IFCHR and makedev(major, minor); the umask(2) takes bits away, "
         "so chmod after (make_node does both); DEFAULT_DEVICES, DEV_SYMLINKS; target_in, "
         "which opens a path inside the root and, with make=False, makes an empty file "
         "there to bind onto; mount(2) with MS_BIND.",
         "for name, (major, minor) in DEFAULT_DEVICES.items(): in a user namespace "
         "`with target_in(root, f'/dev/{name}', make=False) as target: mount(f'/dev/{name}', "
         "target, None, MS_BIND)`, else `with target_in(root, '/dev') as dev: make_node(dev, "
         "name, stat.S_IFCHR | 0o666, os.makedev(major, minor))`; then, in /dev, "
         "os.symlink(target, name) for each of DEV_SYMLINKS."),
        ("tests/test_stage2_namespaces.py::test_the_mount_table",),
    ),
    # Stage 3: cgroups v2.
    Exercise(
        "cgroup-files", 3, "mini_engine/runtime/cgroups.py", "files_for",
        "chapters/03-cgroups.md", "From config.json to cgroup files", "moderate", 30,
        ("Each key of linux.resources becomes a write to one cgroup v2 file: "
         "memory.limit to memory.max, cpu quota and period to cpu.max, pids.limit to "
         "pids.max, and so on. OCI's swap counts memory and swap together (cgroup v1's "
         "memsw); v2's memory.swap.max counts swap alone.",
         "The kernel's Documentation/admin-guide/cgroup-v2.rst (memory.max, "
         "memory.swap.max, cpu.max 'QUOTA PERIOD', cpu.weight, pids.max, io.weight, io.max); "
         "the OCI runtime spec, config-linux.md 'Control groups'; _limit() writes -1 as 'max'; "
         "shares_to_weight().",
         "files['memory.max'] = _limit(limit); memory.swap.max = 'max' if swap < 0 else "
         "swap - limit; files['cpu.max'] = f'{quota or max} {period or 100000}'; cpu.weight "
         "from shares; pids.max; io.weight 'default N'; io.max lines 'MAJ:MIN rbps=N'; "
         "then files.update(resources.get('unified', {}))."),
        ("tests/test_stage3_cgroups.py::test_the_container_has_a_cgroup_of_its_own_and_sees_it_as_root",
         "tests/test_stage3_cgroups.py::test_a_limit_this_host_cannot_apply_is_refused",
         "tests/test_stage3_cgroups.py::test_over_the_memory_limit_is_oom_killed"),
    ),
    Exercise(
        "cgroup-leaf", 3, "mini_engine/runtime/cgroups.py", "create",
        "chapters/03-cgroups.md", "Making the cgroup", "moderate", 30,
        ("A container gets a leaf cgroup of its own. Every ancestor must hand the "
         "controllers down (cgroup.subtree_control), top-down, and holds no process "
         "itself (the no-internal-process rule). Then mkdir the leaf and write its "
         "files; if a write fails, remove the leaf again.",
         "cgroups(7), 'Cgroups v2 subtree control' and 'no internal processes rule'; "
         "files_for, controllers_needed, refuse_missing, available, enable(directory, "
         "controllers); mkdir(2), rmdir(2).",
         "mount = mount_point(); files = files_for(resources); needed = controllers_needed("
         "files); refuse_missing(needed, mount); add memory, pids, cpu, io that are "
         "available; walk from mount down to dirname(path): enable() then makedirs each; "
         "enable(parent); os.mkdir(path); write each file, os.rmdir(path) on OSError."),
        ("tests/test_stage3_cgroups.py::test_the_container_has_a_cgroup_of_its_own_and_sees_it_as_root",),
    ),
    # Stage 4: overlayfs.
    Exercise(
        "overlay-mount", 4, "mini_engine/containers/overlay.py", "mount",
        "chapters/04-overlayfs.md", "The mount", "moderate", 25,
        ("One mount(2) of type overlay, with the layers as lowerdir (top first, joined "
         "by ':'), the container's own upperdir and an empty workdir on the same "
         "filesystem. The options must fit one page: the layers are given as short "
         "relative paths, so mount from ``cwd``.",
         "The kernel's Documentation/filesystems/overlayfs.rst ('lowerdir=...,upperdir=...,"
         "workdir=...', 'userxattr'); mount(2); syscalls.mount; PAGE_SIZE; "
         "filesystem_of() to explain a failure.",
         "options = f\"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}\" "
         "(+ ',userxattr' when identity.rootless()); refuse ':' or ',' in a path and "
         "options of PAGE_SIZE or more; save the cwd, os.chdir(cwd), syscalls.mount("
         "'overlay', target, 'overlay', 0, options), a clear ContainerError on OSError, "
         "and fchdir back in finally."),
        ("tests/test_stage4_overlayfs.py::test_root_is_an_overlay_of_the_bundled_image",),
    ),
    Exercise(
        "overlay-diff", 4, "mini_engine/containers/overlay.py", "diff",
        "chapters/04-overlayfs.md", "What a container changed: diff", "moderate", 30,
        ("Everything a container changed is in its upper directory: a file there is "
         "added (A) or changed (C, when a lower layer has it too); a whiteout, a "
         "character device 0/0, is a deletion (D); an opaque directory hides all that "
         "was below it.",
         "overlayfs.rst, 'whiteouts and opaque directories'; _walk(upper), _in_lowers, "
         "is_whiteout(st), is_opaque(path), _lower_names.",
         "for path, st in _walk(upper): below = _in_lowers(lowers, path); whiteout: "
         "('D', path); else ('C' if below else 'A', path), and for an opaque directory "
         "that was below, ('D', f'{path}/{name}') for each lower name upper does not "
         "have again; return sorted by path."),
        ("tests/test_stage4_overlayfs.py::test_diff_lists_added_changed_and_deleted",),
    ),
    # Stage 5: OCI images.
    Exercise(
        "parse-reference", 5, "mini_engine/images/reference.py", "parse",
        "chapters/05-images.md", "Names: references", "moderate", 30,
        ("'busybox' means docker.io/library/busybox:latest. Split off a digest after "
         "'@', a tag after the last ':' that has no '/' after it; the first component "
         "is a registry only if it has a '.' or a ':' or is 'localhost'.",
         "The distribution spec's reference grammar (distribution/reference, "
         "reference.go); the patterns DIGEST, TAG, DOMAIN, COMPONENT above; "
         "DEFAULT_DOMAIN, DEFAULT_TAG, NAME_MAX.",
         "rest, digest = split on '@'; colon = rest.rfind(':'), a tag if colon > "
         "rest.rfind('/'); first, _, remainder = rest.partition('/'); a domain if "
         "remainder and ('.' in first or ':' in first or first == 'localhost'); lowercase "
         "only; 'library/' for Docker Hub's one-word names; tag 'latest' if neither; "
         "return Reference(domain, path, tag, digest)."),
        ("tests/test_stage5_images.py::test_references_normalise_like_docker",),
    ),
    Exercise(
        "whiteouts", 5, "mini_engine/images/layer.py", "Extractor.extract",
        "chapters/05-images.md", "Whiteouts, from tar to overlay", "hard", 40,
        ("A layer records a deletion as an empty file '.wh.NAME', and 'hide everything "
         "below' as '.wh..wh..opq'. Overlayfs reads neither: it wants a character "
         "device 0/0 named NAME, and an opaque xattr on the directory.",
         "The OCI image spec, layer.md 'Whiteouts'; overlayfs.rst 'whiteouts and "
         "opaque directories'; _parts, OPAQUE, WHITEOUT_PREFIX, self.opaque_xattr, "
         "os.setxattr, _whiteout(member), self._dir, self._create.",
         "parts = _parts(member.name, self.what); none: the root itself, "
         "self.dir_times.append(([], int(member.mtime * 1e9))); base == OPAQUE: "
         "os.setxattr(self._dir(parts[:-1]), self.opaque_xattr, b'y'); base starting "
         "with '.wh.': skip aufs's '.wh..wh.*', refuse '', '.', '..', else make "
         "_whiteout(member) named hidden; finally self._create(tar, member, "
         "self._dir(parts[:-1]), base, parts)."),
        ("tests/test_stage5_images.py::test_whiteouts_across_layers",),
    ),
    Exercise(
        "resolve-user", 5, "mini_engine/images/imageconfig.py", "resolve_user",
        "chapters/05-images.md", "From the image config to the process", "moderate", 30,
        ("The image config's User (or -u) is 'name', 'uid', 'name:group' or 'uid:gid'; "
         "config.json wants numbers. Look names up in the image's own /etc/passwd and "
         "/etc/group, never the host's; a bare uid the image does not know is allowed, a "
         "name it does not know is an error. Nothing given means root.",
         "passwd(5), group(5); the image spec, config.md 'User'; _number, _entries("
         "text, fields); User(uid, gid, home=..., additional=...).",
         "no spec: resolve_user('0', ...) with home '/root' if passwd has none; "
         "name_or_uid, _, group_spec = spec.partition(':'); find the passwd entry by name or "
         "uid; User(uid, gid, home) from it (or User(uid, 0, home='/')); a group_spec "
         "replaces the gid (by number or from /etc/group); without one, the user's "
         "supplementary groups come from /etc/group."),
        ("tests/test_stage5_images.py::test_the_image_config_becomes_the_process",),
    ),
    # Stage 6: capabilities and seccomp.
    Exercise(
        "capabilities-for", 6, "mini_engine/config/security.py", "capabilities_for",
        "chapters/06-security.md", "The five sets in config.json", "easy", 15,
        ("docker's default set, plus --cap-add, minus --cap-drop (ALL means all), "
         "becomes config.json's five sets. A root process gets them bounding, effective, "
         "permitted; another user only the bounding set.",
         "capabilities(7), 'Thread capability sets'; the runtime spec, config.md "
         "'process.capabilities'; DEFAULT_CAPS, _names(...) checks and normalises names.",
         "start from DEFAULT_CAPS (or every capability with ALL added); add and drop; "
         "return dict(bounding=caps, effective=caps if root else [], ...) as the "
         "chapter's listing shows for root and non-root."),
        ("tests/test_stage6_security.py::test_default_capabilities_are_dockers",),
    ),
    Exercise(
        "capset", 6, "mini_engine/runtime/security.py", "set_capabilities",
        "chapters/06-security.md", "The runtime: bounding set first, then the rest", "moderate", 30,
        ("After the user switch, set the permitted, effective and inheritable sets in "
         "one capset(2) call, then raise the ambient ones (which need to be both "
         "permitted and inheritable already).",
         "capabilities(7); capset(2) with a version 3 header and two data structs (64 "
         "bits in two 32-bit halves); prctl(2) PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE.",
         "mask(names) = OR of 1 << number; build the header (_LINUX_CAPABILITY_VERSION_3, "
         "pid 0) and data[0], data[1] from the low and high halves; syscalls.capset; "
         "then prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap) for each ambient name."),
        ("tests/test_stage6_security.py::test_default_capabilities_are_dockers",),
    ),
    Exercise(
        "seccomp-compile", 6, "mini_engine/runtime/seccomp.py", "compile_filter",
        "chapters/06-security.md", "The compiler", "hard", 60,
        ("A seccomp filter is a classic BPF program run on every system call: check "
         "the architecture (kill a foreign one, and x32 calls), then one block per "
         "(rule, syscall) comparing the number and the arguments and returning the "
         "rule's action, then the default action (ENOSYS for a number newer than the "
         "profile knows).",
         "seccomp(2), 'struct seccomp_data' (nr at 0, arch at 4, args at 16); "
         "filter.txt; the runtime spec, config-linux.md 'Seccomp'; Program.emit/label/"
         "assemble, BPF_LD_W_ABS, BPF_JEQ_K, BPF_JGE_K, BPF_JGT_K, BPF_RET_K, action(), "
         "compare().",
         "prog = Program(); load ARCH_OFFSET, JEQ AUDIT_ARCH_X86_64 else RET_KILL_PROCESS; "
         "load NR_OFFSET, JGE X32_SYSCALL_BIT -> kill; for each rule and name in numbers: "
         "JEQ nr else next, compare() each arg, RET action, label next, reload NR after "
         "args; then JGT max(numbers) -> RET_ERRNO|ENOSYS; RET default; prog.assemble()."),
        ("tests/test_stage6_security.py::test_seccomp_refuses_with_eperm",),
    ),
    # Stage 7: networking.
    Exercise(
        "ipam", 7, "mini_engine/network/ipam.py", "Leases.allocate",
        "chapters/07-networking.md", "Addresses: IPAM", "easy", 15,
        ("Give each container the first free host address of the subnet (not the "
         "gateway), and the same one again if it already has a lease. The leases "
         "file is shared by every engine at once: change it only under its lock.",
         "ipaddress.ip_network(...).hosts(); self._locked() yields the leases dict "
         "and writes it back; flock(2) is what makes it safe.",
         "with self._locked() as leases: return the address whose lease's container is "
         "container_id; taken = set(leases) | {str(self.gateway)}; the first host not "
         "taken gets leases[str(host)] = dict(details, container=container_id); none "
         "left: ContainerError."),
        ("tests/test_stage7_ipam.py::test_twenty_engines_at_once_get_twenty_addresses",
         "tests/test_stage7_ipam.py::test_release_and_reuse"),
    ),
    Exercise(
        "veth-pair", 7, "mini_engine/network/links.py", "attach",
        "chapters/07-networking.md", "Links, by index", "hard", 40,
        ("A veth pair is a cable: one end stays on the host, on the bridge, the other "
         "goes into the container's network namespace as eth0. Then, inside: its "
         "address, up, lo up, and a default route through the bridge's address.",
         "veth(4), ip-link(8), rtnetlink(7); IPRoute.link_add(name, 'veth', mtu=, "
         "master=, up=, peer=, peer_netns=fd), link_index, addr_add, link_set, "
         "route_add_default; ensure_bridge, default_mtu, inside(netns).",
         "gateway = first host of the subnet; with IPRoute() as ipr: bridge index = "
         "ensure_bridge(...); ipr.link_add(f'me{container_id[:12]}', 'veth', mtu=..., "
         "master=bridge_index, up=True, peer='eth0', peer_netns=fd of netns); then with "
         "an IPRoute made inside(netns): addr_add(eth0, address, prefixlen), link_set "
         "eth0 and lo up, route_add_default(gateway)."),
        ("tests/test_stage7_networking.py::test_bridge_gives_eth0_an_address_a_route_and_the_uplinks_mtu",),
    ),
    # Stage 8: real images, detached.
    Exercise(
        "parse-volume", 8, "mini_engine/containers/volumes.py", "parse_volume",
        "chapters/08-real-images.md", "Volumes and mounts", "moderate", 30,
        ("-v SOURCE:DESTINATION[:OPTIONS]: an absolute SOURCE is a host directory "
         "(a bind mount), a name is a named volume the engine keeps. Options: ro or rw, "
         "and one propagation. Both become an OCI mount of type bind with rbind.",
         "docker run --volume; mount_namespaces(7) for the propagations; the runtime "
         "spec, config.md 'Mounts'; PROPAGATIONS, NAME, create(paths, name, "
         "quiet_if_there=True), check_propagation.",
         "parts = spec.split(':') (2 or 3); check each option; read_only = modes == "
         "['ro']; propagation default 'rprivate'; the destination absolute and not '/'; "
         "host path: exists, check_propagation; else a valid name, no propagation, "
         "create it; mount = {'destination': normpath, 'type': 'bind', 'source': ..., "
         "'options': ['rbind', propagation] + ['ro']}; and the inspect record."),
        ("tests/test_stage8_real_images.py::test_volumes_bind_named_tmpfs_and_a_read_only_root",),
    ),
    Exercise(
        "log-pump", 8, "mini_engine/containers/monitor.py", "pump",
        "chapters/08-real-images.md", "The log", "hard", 40,
        ("The monitor copies the container's stdout and stderr into its log, line by "
         "line, each line stamped with the time and its stream (podman's k8s-file "
         "format: F for a full line, P for a partial one), until both pipes close, or "
         "a second after the process has exited.",
         "select(2) through selectors.DefaultSelector; pidfd_open(2) becomes readable "
         "when the process exits; read(2) returning b'' is EOF; logfile.Writer opens the "
         "log (0600, O_APPEND) and rotates it; logfile.now().",
         "register both pipes and os.pidfd_open(pid); loop while streams: on the pidfd "
         "set a 1 s deadline; on data split on b'\\n' keeping the partial tail, write "
         "f'{stamp} {stream} F ' + line for each; on EOF write a partial line with P, "
         "unregister; stop when the deadline passes. echo: write each chunk of a stream "
         "it names to fd 1 or 2 as well."),
        ("tests/test_stage8_real_images.py::test_run_d_returns_at_once_and_the_monitor_keeps_the_log",),
    ),
    # The runtime chapter: mini-runc on its own.
    Exercise(
        "runc-command-line", "runtime", "mini_engine/runtime/cli.py", "parse",
        "chapters/oci-runtime.md", "runc's command line", "moderate", 30,
        ("runc's command line: global options, then a command, then its options and "
         "arguments (an id, and more for kill and exec). exec's command is the "
         "container's, so its options stop at the first argument.",
         "runc(8) and runc-create(8) and friends; GLOBAL_OPTIONS, GLOBAL_SHORT, COMMANDS "
         "(help, arguments, options, short), take_options(words, values, short, "
         "stop_at_argument), usage().",
         "values = dict(GLOBAL_OPTIONS); take_options(words, values, GLOBAL_SHORT, "
         "stop_at_argument=True); --version and --help print and SystemExit(0); the "
         "command from COMMANDS; its options; count the arguments; id, kill's signal "
         "(SIGTERM), exec's cmd after '--', create's --preserve-fds as int; return "
         "SimpleNamespace with '-' turned into '_'."),
        ("tests/test_runtime_cli.py::test_the_command_line",),
    ),
)


def by_id(exercise_id: str) -> Exercise:
    for exercise in EXERCISES:
        if exercise.id == exercise_id:
            return exercise
    from mini_engine.base.errors import ContainerError

    known = ", ".join(e.id for e in EXERCISES)
    raise ContainerError(f"no exercise {exercise_id!r}: choose one of {known}")
