"""One module per client-side CLI command (see client_commands.py)."""
