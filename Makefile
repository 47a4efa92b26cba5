# Thin: the logic lives in scripts/ and in Python. Run as root.
.PHONY: setup demo test lint docs labs notebook vm-test systemd-test arm-test conformance bench student grade

setup:
	scripts/setup.sh

demo:
	scripts/demo.sh

test:
	scripts/test.sh

lint: setup
	.venv/bin/ruff check .

docs: setup
	.venv/bin/sphinx-build -W --keep-going -b html -c docs . docs/_build/html

labs: setup
	.venv/bin/python labs/run.py

# The labs as notebooks: JupyterLab as root, its token printed; NOTEBOOK_IP
# (default 127.0.0.1; the lab VM sets 0.0.0.0) and NOTEBOOK_PORT (8888).
notebook: setup
	$(or $(VENV),.venv)/bin/python scripts/notebook.py $(if $(NOTEBOOK_IP),--ip $(NOTEBOOK_IP)) $(if $(NOTEBOOK_PORT),--port $(NOTEBOOK_PORT))

# The stage-3 tests (or TESTS="...") in the throwaway cgroup-v2 VM.
vm-test: setup
	.venv/bin/python scripts/testvm.py run -- .venv/bin/pytest -p no:cacheprovider --color=no $(or $(TESTS),-m "stage3 or vm")

# The tests that need systemd as PID 1 (mini-runc --systemd-cgroup; podman's and
# containerd's default there), in the same VM booted with systemd.
systemd-test: setup
	.venv/bin/python scripts/testvm.py run --systemd -- .venv/bin/pytest -p no:cacheprovider --color=no $(or $(TESTS),-m systemd)

# Stages 0-2's tests (or TESTS="...") on aarch64, in an emulated arm64 VM
# (scripts/armvm.py): slow, minutes per test file; not part of CI.
ARM_TESTS = tests/test_stage0_process.py tests/test_stage1_chroot.py tests/test_stage2_namespaces.py tests/test_machines.py
arm-test:
	python3 scripts/armvm.py build
	python3 scripts/armvm.py run -- env MINI_ENGINE_TEST_SLOWDOWN=10 python3 -m pytest -p no:cacheprovider --color=no --timeout 1800 $(or $(TESTS),$(ARM_TESTS))

# The OCI runtime validation suite, mini-runc and runc side by side.
conformance: setup
	.venv/bin/python scripts/conformance.py

# Speed, side by side with the real tools, as ratios.
bench: setup
	.venv/bin/python bench/start.py
	.venv/bin/python bench/unpack.py
	.venv/bin/python bench/pull.py
	.venv/bin/python bench/network.py
	.venv/bin/python bench/build.py

# The student edition (issue 18): this tree with each exercise a stub, written
# to DIR (stdlib only: no setup needed). Then, in DIR: make grade.
student:
	@test -n "$(DIR)" || { echo "make student DIR=/path/to/new/dir"; exit 2; }
	python3 -m mini_engine course export "$(DIR)"

# Run a stage's checks and the earlier stages' (STAGE=N; default: the first
# stage with an exercise left), GOOD or BAD for each; JSON=1 for a report,
# JUNIT=FILE for JUnit XML (instructor/guide.md, "Grading a class").
grade: setup
	.venv/bin/mini-engine grade $(STAGE) $(if $(JSON),--json) $(if $(JUNIT),--junit $(JUNIT))
