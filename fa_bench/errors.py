"""Errors a user fixes by changing the command line or the config: fa-run prints their message alone."""


class ConfigError(ValueError):
    """A config that cannot run, raised before any training starts. The message names the key, the
    value and what is valid."""


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder (the same config is already running)."""
