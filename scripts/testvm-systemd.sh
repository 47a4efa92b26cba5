#!/bin/sh
# PID 1 of the test VM for a moment, as `testvm.py run --systemd` boots it:
# write the unit that runs the command from mini.cmd=FILE, then become systemd,
# which stays PID 1 (as on the lab's Vagrant VM) and mounts what a Debian
# machine has, cgroup v2 unified among it. The unit reports the command's exit
# code on the console as a marker line (scripts/testvm.py reads it), and
# powers off. Nothing else is started: the unit is the boot's only goal.
cmd=$(sed -n 's/.*mini.cmd=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p /etc/systemd/system.conf.d
printf '[Manager]\nShowStatus=no\n' > /etc/systemd/system.conf.d/testvm.conf
cat > /etc/systemd/system/mini-vm.service <<EOF
[Unit]
Description=the test VM's command
DefaultDependencies=no

[Service]
Type=oneshot
StandardInput=null
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
Environment=HOME=/root
ExecStart=/bin/sh -c 'hostname testvm; ip link set lo up; echo MINI_VM_START; sh $cmd; echo "MINI_VM_EXIT=\$?"; busybox poweroff -f'
EOF
exec /lib/systemd/systemd --unit=mini-vm.service --show-status=false --log-level=warning
