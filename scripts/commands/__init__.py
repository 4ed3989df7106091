"""One module per ``shutterlog`` subcommand; each has ``register(subparsers)``."""
