"""The low-level runtime: a bundle (rootfs + config.json) in, an isolated process out.

This package is the twin of runc and crun. It reads the OCI runtime spec's
``config.json`` and nothing else: it never imports the engine
(``mini_engine`` outside this package), so the contract between the two is
the file a learner can open, edit, and hand to runc to compare.

It is also fast to start, since an engine runs it once per step of every
container: it needs nothing but Python's standard library (``bin/mini-runc``
starts Python without site-packages), and its modules import at run time
only what they use. Names needed only in annotations (``typing.Any``) are
imported under ``if TYPE_CHECKING:``, with ``TYPE_CHECKING = False``
written out, since importing ``typing`` itself costs every call ~3 ms.
"""
