# Thin: the logic lives in scripts/ and in Python. Run as root.
.PHONY: setup demo test lint docs labs

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
