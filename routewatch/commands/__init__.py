"""One module per ``routewatch`` subcommand; each exposes ``register(subparsers)``."""
