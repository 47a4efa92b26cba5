"""The OCI runtime validation suite grades mini-runc (scripts/conformance.py).

Each test below passed against mini-runc on the CI host when it was added;
a runtime change that breaks one fails here. `make conformance` prints the
whole table with runc beside it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import REPO

# The host-safe tests mini-runc passes, with a verdict (TAP "ok" lines).
PASSING = [
    "config_updates_without_affect", "create", "default", "delete", "delete_only_create_resources",
    "hooks_stdin", "hostname", "kill", "kill_no_effect", "killsig", "linux_devices", "linux_masked_paths",
    "linux_ns_itype", "linux_ns_nopath", "linux_ns_path", "linux_ns_path_type",
    "linux_readonly_paths", "linux_rootfs_propagation", "linux_seccomp", "linux_sysctl",
    "linux_uid_mappings", "misc_props", "mounts", "process", "process_oom_score_adj",
    "process_user", "root_readonly_true", "state",
]


@pytest.mark.timeout(1800)
def test_the_validation_suite() -> None:
    if shutil.which("go") is None:
        pytest.fail("needs Go to build the suite: scripts/install-system-deps.sh --test installs golang-go")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "conformance.py"), "--no-runc",
                             *PASSING], capture_output=True, text=True, timeout=1700)
    assert result.returncode == 0, result.stderr
    verdicts = {line.split()[0]: line.split()[2] for line in result.stdout.splitlines()[1:]
                if len(line.split()) >= 3 and line.split()[0] in PASSING}
    assert verdicts == {test: "pass" for test in PASSING}, result.stdout
