#!/bin/sh
# PID 1 of the test VM, after switch_root into the host's "/" (read-only 9p
# under a tmpfs overlay): mount what a Debian machine would, with cgroup v2
# unified, run the command from mini.cmd=FILE, report its exit code on the
# console as a marker line (scripts/testvm.py reads it), power off.
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
# /run starts empty, as after a boot: no runtime state of the host's.
# /tmp stays the host's (read-only below, the VM's tmpfs above): a checkout
# or a cache under the host's /tmp must be visible here.
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
hostname testvm
ip link set lo up
export HOME=/root
cmd=$(sed -n 's/.*mini.cmd=\([^ ]*\).*/\1/p' /proc/cmdline)
echo MINI_VM_START
sh "$cmd" </dev/null
echo "MINI_VM_EXIT=$?"
busybox poweroff -f
