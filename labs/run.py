"""Run the labs: headless (each lab.py as a script) or as notebooks through ipykernel.

    python labs/run.py                    every lab, headless
    python labs/run.py 01-chroot          one lab
    python labs/run.py --notebook         every lab, converted by jupytext and
                                          executed cell by cell in a Jupyter kernel

Exit status 0 when every lab ran to its end with all its checks holding.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

LABS = os.path.dirname(os.path.abspath(__file__))


def all_labs() -> list[str]:
    return sorted(d for d in os.listdir(LABS) if os.path.isfile(os.path.join(LABS, d, "lab.py")))


def run_headless(lab: str) -> bool:
    return subprocess.run([sys.executable, os.path.join(LABS, lab, "lab.py")]).returncode == 0


def run_notebook(lab: str) -> bool:
    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = jupytext.read(os.path.join(LABS, lab, "lab.py"))
    client = NotebookClient(notebook, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": os.path.join(LABS, lab)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        print(exc, file=sys.stderr)
        return False
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("name") == "stdout":
                print(output["text"], end="")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", action="store_true", help="run through a Jupyter kernel")
    parser.add_argument("labs", nargs="*", help="lab directories (default: all)")
    args = parser.parse_args()
    labs = args.labs or all_labs()
    failed = []
    for lab in labs:
        lab = os.path.basename(lab.rstrip("/"))
        print(f"=== {lab} ({'notebook' if args.notebook else 'headless'})", flush=True)
        ok = run_notebook(lab) if args.notebook else run_headless(lab)
        if not ok:
            failed.append(lab)
    print(f"=== {len(labs) - len(failed)} of {len(labs)} labs passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
