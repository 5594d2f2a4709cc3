"""Errors that are the user's to fix: the CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A mistake in input the user controls (config, file, argument). Exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    pass


class ModelError(UserError):
    pass
