"""The switching core: the scheduler decides, the manager carries its actions out, the lifecycle owns the backends.

Nothing is imported here, so the CLI and the UI can read `swap.states` without loading the core.
"""
