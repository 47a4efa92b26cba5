"""The engine's configuration files, where docker and podman users look for them.

Chapters 05 (registries.conf, policy.json) and 08 (containers.conf) read this package. Man pages:
containers.conf(5), containers-registries.conf(5), containers-policy.json(5).
"""
