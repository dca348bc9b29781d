"""Converting released weights (official YOLOv6 checkpoints, YOLOv6-Lite NCNN pairs) into repyolo
checkpoints (``repyolo import-weights``)."""
from __future__ import annotations

from pathlib import Path

from repyolo.errors import RepyoloError
from repyolo.utils.paths import check_output_path


def import_weights(weights: str | Path, output: str | Path | None = None, model: str | None = None,
                   keep_aux: bool = True, bin: str | Path | None = None) -> tuple[Path, dict]:
    """Convert released weights and write them as a repyolo checkpoint (default ``<name>_repyolo.pt``
    beside them), checked to load back: an official YOLOv6 checkpoint (read without running code
    from it), or a YOLOv6-Lite NCNN ``.param`` with its ``.bin`` (``bin``, default beside it).
    ``model`` forces the architecture instead of inferring it; ``keep_aux=False`` drops the
    training-only head branches. Returns ``(written path, import summary)``."""
    from repyolo.io.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
    from repyolo.io.ncnn_import import convert_ncnn, looks_ncnn
    from repyolo.io.official import convert_official, looks_official

    src = Path(weights)
    out = Path(output) if output else src.with_name(f"{src.stem}_repyolo.pt")
    if out.resolve() == src.resolve() or (bin and out.resolve() == Path(bin).resolve()):
        raise RepyoloError(f"{out}: the output would overwrite the input file; choose another -o")
    check_output_path(out)
    if looks_ncnn(src):
        ckpt = convert_ncnn(src, bin, model=model)
    elif bin:
        raise RepyoloError(f"--bin is for NCNN .param files; {src} is not one")
    elif src.is_file() and not looks_official(src) and _is_repyolo_checkpoint(src):
        raise RepyoloError(f"{src}: already a repyolo checkpoint (nothing to import): use it directly with "
                           "--weights")
    else:
        ckpt = convert_official(src, keep_aux=keep_aux, model=model)
    save_checkpoint(ckpt, out)
    model_from_checkpoint(read_checkpoint(out))  # the written file loads into its model
    return out, ckpt["args"]["import"]


def _is_repyolo_checkpoint(path: Path) -> bool:
    from repyolo.errors import CheckpointError
    from repyolo.io.checkpoint import read_checkpoint

    try:
        read_checkpoint(path)
    except CheckpointError:
        return False
    return True
