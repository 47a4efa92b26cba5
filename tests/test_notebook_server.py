"""The labs as notebooks for real: `make notebook`'s JupyterLab server runs a lab through its REST API.

scripts/notebook.py starts JupyterLab as root with a token it prints. The
test starts it as `make notebook` does, reads the token from what it
printed, opens a lab as a notebook through the server (jupytext's contents
manager), starts a kernel with a session, runs every code cell over the
kernel's websocket (the Jupyter messaging protocol), and removes all of it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Engine

pytestmark = [pytest.mark.stage(0), pytest.mark.root]

LAB = "labs/00-process/lab.py"


class Server:
    def __init__(self, port: int, token: str) -> None:
        self.base, self.token = f"http://127.0.0.1:{port}", token

    def api(self, method: str, path: str, body: dict[str, Any] | None = None,
            token: bool = True) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        if token:
            request.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                data = response.read()
                return response.status, json.loads(data) if data else None
        except urllib.error.HTTPError as exc:
            return exc.code, None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cell(ws: Any, session: str, code: str) -> tuple[str, str]:
    """Execute ``code`` in the kernel; its reply's status ("ok", "error") and its stdout."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session,
                   "username": "test", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    stdout, status, idle = [], None, False
    while status is None or not idle:
        message = json.loads(ws.recv())
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind = message["header"]["msg_type"]
        if kind == "stream" and message["content"]["name"] == "stdout":
            stdout.append(message["content"]["text"])
        elif kind == "error":
            stdout.append("\n".join(message["content"]["traceback"]))
        elif kind == "execute_reply":
            status = message["content"]["status"]
        elif kind == "status" and message["content"]["execution_state"] == "idle":
            idle = True
    return status, "".join(stdout)


def test_make_notebook_serves_a_lab_that_runs_through_its_kernel(engine: Engine, tmp_path: Path) -> None:
    import websocket  # websocket-client, which jupyter_server brings

    port = free_port()
    # Jupyter's and IPython's own files (runtime, cookie secret, profile) in
    # the test's directory, not in root's home.
    env = dict(engine.env, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               IPYTHONDIR=str(tmp_path / "ipython"), NOTEBOOK_IP="", NOTEBOOK_PORT=str(port))
    before = set(subprocess.run(["git", "status", "--porcelain", "--ignored", "labs"], cwd=REPO,
                                capture_output=True, text=True).stdout.splitlines())
    # The server's log to a file: a pipe no one reads would stop it when full.
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([sys.executable, str(REPO / "scripts" / "notebook.py")], env=env,
                              stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    try:
        assert server.stdout is not None
        printed = [server.stdout.readline() for _ in range(4)]
        assert printed[0] == f"notebook: the labs as notebooks, as root, on 127.0.0.1:{port}\n"
        token = printed[2].removeprefix("notebook: token ").strip()
        assert len(token) == 48 and f"/lab/tree/labs?token={token}" in printed[1]
        nb = Server(port, token)
        deadline = time.monotonic() + 60
        while True:
            try:
                if nb.api("GET", "/api/status")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
            time.sleep(0.2)
        # Without the token, the server serves nothing.
        assert nb.api("GET", f"/api/contents/{LAB}", token=False)[0] == 403

        # A double click opens a Python file as jupytext's notebook: JupyterLab's
        # default viewer for the file type "python" is the text editor, unless told.
        status, settings = nb.api("GET", "/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
        assert status == 200
        assert settings["schema"]["properties"]["defaultViewers"]["default"] == {"python": "Jupytext Notebook"}
        # ... a viewer that jupytext's extension, served to the browser, provides.
        status, jupytext = nb.api("GET", "/lab/api/settings/jupyterlab-jupytext:plugin")
        assert status == 200 and jupytext["id"] == "jupyterlab-jupytext:plugin"

        # The lab, opened as a notebook: jupytext reads lab.py's cells.
        status, model = nb.api("GET", f"/api/contents/{LAB}?type=notebook&content=1")
        assert (status, model["type"]) == (200, "notebook")
        cells = [c["source"] for c in model["content"]["cells"] if c["cell_type"] == "code"]
        assert len(cells) > 5 and cells[-1] == 'print("lab 00 done")'

        status, session = nb.api("POST", "/api/sessions", {
            "path": LAB, "type": "notebook", "name": "lab.py", "kernel": {"name": "python3"}})
        assert status == 201
        kernel = session["kernel"]["id"]
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}", timeout=300)
        try:
            me = uuid.uuid4().hex
            # The kernel is root's, in the lab's own directory.
            assert run_cell(ws, me, "import os; print(os.geteuid(), os.getcwd())") == (
                "ok", f"0 {REPO / 'labs' / '00-process'}\n")
            output = []
            for source in cells:
                status, out = run_cell(ws, me, source)
                assert status == "ok", out[-3000:]
                output.append(out)
            assert output[-1] == "lab 00 done\n"
            # Every check of the lab held, and printed so, through the kernel.
            assert "ok: the command has descriptors 0, 1, 2 and 3, no more\n" in "".join(output)
        finally:
            ws.close()
        assert nb.api("DELETE", f"/api/sessions/{session['id']}")[0] == 204
        assert nb.api("GET", "/api/kernels")[1] == []
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
    # Nothing left in the repository: no checkpoints, no saved notebook.
    after = set(subprocess.run(["git", "status", "--porcelain", "--ignored", "labs"], cwd=REPO,
                               capture_output=True, text=True).stdout.splitlines())
    assert after == before
