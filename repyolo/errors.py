"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class RepyoloError(Exception):
    """A problem with the user's input (file, config, argument) that we can explain in one line."""


class DataError(RepyoloError):
    """A data set, data YAML, image or label file that cannot be used."""


class CheckpointError(RepyoloError):
    """A weights file that is missing, corrupt, foreign or unsafe."""


class ConfigError(RepyoloError):
    """A model or hyper-parameter config that is malformed."""
