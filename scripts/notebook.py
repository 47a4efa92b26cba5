#!/usr/bin/env python3
"""Open the labs as notebooks: JupyterLab on this repository, as root, with a token of its own.

    scripts/notebook.py [--ip 127.0.0.1] [--port 8888]      (make notebook)

The labs change kernel state (namespaces, mounts, cgroups), so their kernel
must run as root, and a kernel runs as whoever runs the server: this starts
the server as root (JupyterLab refuses that unless told ``--allow-root``).
A server of root's is a root shell for whoever holds its token, so the token
is a fresh random one, printed here and nowhere else, and the server listens
on 127.0.0.1 unless told otherwise. In the lab VM, the Vagrantfile forwards
the port to the learner's own 127.0.0.1 and sets ``NOTEBOOK_IP=0.0.0.0``
(a forwarded port arrives on the VM's own network, not on its loopback).

Each ``labs/NN-slug/lab.py`` opens as a notebook through jupytext, with a
double click: the server's settings (scripts/jupyterlab/settings/overrides.json)
make jupytext's notebook the default viewer of Python files, where
JupyterLab's own default is the text editor ("Open With", "Editor" still
shows the source). Run its cells from the top. Stop the server
with Ctrl-C: it stops the kernels it started.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# JupyterLab's settings for this server only: overrides.json there changes the
# defaults, and the learner's own settings (root's ~/.jupyter) still win.
SETTINGS = REPO / "scripts" / "jupyterlab" / "settings"


def argv(ip: str, port: int, token: str) -> list[str]:
    """The command line of a JupyterLab server on the repository."""
    return [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            f"--ip={ip}", f"--port={port}", "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={REPO}", f"--IdentityProvider.token={token}",
            "--ServerApp.default_url=/lab/tree/labs", f"--LabApp.app_settings_dir={SETTINGS}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ip", default=os.environ.get("NOTEBOOK_IP") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("NOTEBOOK_PORT") or 8888))
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("notebook: the labs' kernel must run as root: sudo make notebook", file=sys.stderr)
        return 1
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        print("notebook: JupyterLab is not installed: run scripts/setup.sh (the labs extra)",
              file=sys.stderr)
        return 1
    token = secrets.token_hex(24)
    host = "localhost" if args.ip in ("127.0.0.1", "0.0.0.0") else args.ip
    print(f"notebook: the labs as notebooks, as root, on {args.ip}:{args.port}\n"
          f"notebook: open http://{host}:{args.port}/lab/tree/labs?token={token}\n"
          f"notebook: token {token}\n"
          "notebook: a lab: open labs/NN-slug/lab.py, it opens as a notebook; Ctrl-C stops",
          flush=True)
    os.execv(sys.executable, argv(args.ip, args.port, token))


if __name__ == "__main__":
    raise SystemExit(main())
