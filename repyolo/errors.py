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
    """``'TypeName: first line of the message'``: how a foreign exception (torch, onnxruntime,
    OpenVINO, OpenCV ...) is quoted inside a one-line error. A line longer than ``limit`` ends at
    its last full sentence (or word) within the limit, marked ``...``, never mid-word."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    text = lines[0].strip()
    if len(text) > limit:
        head = text[:limit]
        sentence = head.rfind(". ")
        text = head[: sentence + 1] if sentence >= limit // 3 else head.rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {text}"
