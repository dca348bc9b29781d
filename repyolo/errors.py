"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class RepyoloError(Exception):
    """A problem with the user's input (file, config, argument) that we can explain in one line."""


class DataError(RepyoloError):
    """A data set, data YAML, image or label file that cannot be used."""


class CheckpointError(RepyoloError):
    """A weights file that is missing, corrupt, foreign or unsafe."""


class ConfigError(RepyoloError):
    """A model or hyper-parameter config that is malformed."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """``'TypeName: first line of the message'`` (cut to ``limit`` characters): how a foreign
    exception (torch, onnxruntime, OpenVINO, OpenCV ...) is quoted inside a one-line error."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit]}" if lines else type(exc).__name__
