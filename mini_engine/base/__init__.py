"""The shared base of the runtime and the engine: errors, system calls, files."""
