"""The low-level runtime: a bundle (rootfs + config.json) in, an isolated process out.

This package is the twin of runc and crun. It reads the OCI runtime spec's
``config.json`` and nothing else: it never imports the engine
(``mini_engine`` outside this package), so the contract between the two is
the file a learner can open, edit, and hand to runc to compare.
"""
