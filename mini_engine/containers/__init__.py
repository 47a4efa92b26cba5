"""Containers: their records, run and the commands on them, the monitor, volumes, overlays."""
