#!/bin/sh
# The workbench's probe: what the kernel shows a process in this container,
# printed as one JSON object. Tests and labs run it inside and compare it
# with the host. Only busybox applets: it runs on the bundled image.
# Anything it cannot read (no /proc before chapter 2) comes out as null.

str() {  # a JSON string, or null for nothing
    if [ -z "$1" ]; then printf null; return; fi
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' | sed -e ':a;N;$!ba;s/\n/\\n/g')"
}

namespaces() {  # {"net": 4026531840, ...}: the inode is the namespace's identity
    sep=""
    printf '{'
    for n in cgroup ipc mnt net pid time user uts; do
        inode=$(readlink "/proc/$$/ns/$n" 2>/dev/null | sed -e 's/.*\[\(.*\)\]/\1/')
        printf '%s"%s": %s' "$sep" "$n" "${inode:-null}"
        sep=", "
    done
    printf '}'
}

links() {  # {"lo": 9, ...}: interface flags, IFF_UP is bit 0
    sep=""
    printf '{'
    for dir in /sys/class/net/*; do
        [ -e "$dir/flags" ] || continue
        printf '%s"%s": %d' "$sep" "${dir##*/}" "$(cat "$dir/flags")"
        sep=", "
    done
    printf '}'
}

status() {  # the security fields of /proc/self/status: capability masks, no_new_privs, seccomp
    sep=""
    printf '{'
    for key in CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs Seccomp Seccomp_filters; do
        value=$(sed -n "s/^$key:[[:space:]]*//p" /proc/self/status 2>/dev/null)
        printf '%s"%s": %s' "$sep" "$key" "$(str "$value")"
        sep=", "
    done
    printf '}'
}

pids() {  # the processes this container's /proc shows
    sep=""
    printf '['
    for dir in /proc/[0-9]*; do
        [ -d "$dir" ] || continue
        printf '%s%s' "$sep" "${dir##*/}"
        sep=", "
    done
    printf ']'
}

mountpoints() {  # the mount points, field 5 of mountinfo
    sep=""
    printf '['
    if [ -r /proc/self/mountinfo ]; then
        for m in $(cut -d' ' -f5 /proc/self/mountinfo); do
            printf '%s"%s"' "$sep" "$m"
            sep=", "
        done
    fi
    printf ']'
}

printf '{"pid": %s, "ppid": %s, "uid": %s, "gid": %s, ' "$$" "$PPID" "$(id -u)" "$(id -g)"
printf '"hostname": %s, ' "$(str "$(hostname)")"
printf '"cwd": %s, ' "$(str "$(pwd)")"
printf '"namespaces": %s, ' "$(namespaces)"
printf '"uid_map": %s, ' "$(str "$(cat /proc/self/uid_map 2>/dev/null)")"
printf '"gid_map": %s, ' "$(str "$(cat /proc/self/gid_map 2>/dev/null)")"
printf '"links": %s, ' "$(links)"
printf '"pids": %s, ' "$(pids)"
printf '"cgroup": %s, ' "$(str "$(cat /proc/self/cgroup 2>/dev/null)")"
printf '"uptime": %s, ' "$(cut -d' ' -f1 /proc/uptime 2>/dev/null || echo null)"
printf '"status": %s, ' "$(status)"
printf '"mounts": %s}\n' "$(mountpoints)"
