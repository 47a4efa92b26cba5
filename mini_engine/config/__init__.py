"""The engine's side of the OCI contract: the config.json it writes, security defaults, limits."""
