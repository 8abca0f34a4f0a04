"""Subcommands of ``freenet``: each module here has ``register(subparsers)`` and imports its heavy
dependencies only when it runs, so ``freenet --help`` stays fast."""
