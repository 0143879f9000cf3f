"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""


class UserError(ValueError):
    """Bad input (config, data file, command-line value); the message names the problem."""
