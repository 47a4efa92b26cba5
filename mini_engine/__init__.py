"""mini_engine: a container engine grown one kernel feature at a time.

Two layers, as in the real world: ``mini_engine.runtime`` turns an OCI bundle
into an isolated process (runc's job); the modules beside it are the engine
(podman's job): images, containers, the command line.
"""

__version__ = "0.1.0"
