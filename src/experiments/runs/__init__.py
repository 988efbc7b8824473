"""A run directory: its files, atomic writes, its lock and reuse rules, interrupts, and data-parallel ranks."""
