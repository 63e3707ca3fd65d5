"""flows.cli.main."""
