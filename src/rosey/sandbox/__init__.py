"""The only package that spawns processes: plugin processes, their limits, logs and stats."""
