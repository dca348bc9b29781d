"""Step 2 of RepOpt: hyper-search the scales of a RepOpt model with the regular trainer."""
from __future__ import annotations

from pathlib import Path

from repyolo.cfg.settings import TrainArgs
from repyolo.engine.repoptimizer import extract_scales, hypersearch_config, save_scales
from repyolo.engine.trainer import Trainer
from repyolo.io.checkpoint import model_from_checkpoint, read_checkpoint
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)


def hyper_search(model="yolov6n-repopt", data: str | Path = "", epochs: int = 10, img: int = 640, batch: int = 16,
                 project: str | Path = "runs/hypersearch", name: str = "exp", save: str | Path | None = None,
                 **train_kwargs) -> dict:
    """Step 2 of RepOpt: train the hyper-search twin of ``model`` on ``data`` with the regular trainer,
    then read the learned scales off its final EMA weights.

    ``train_kwargs`` go to :class:`~repyolo.cfg.settings.TrainArgs` (``device``, ``workers``, ``hyp`` ...).
    The scales are written to ``save`` (default ``project/name/scales.pt``) and returned.
    """
    cfg = hypersearch_config(model)
    trainer = Trainer(TrainArgs(model=cfg, data=str(data), epochs=epochs, img=img, batch=batch, project=str(project),
                                name=name, **train_kwargs))
    trainer.train()
    scales = extract_scales(model_from_checkpoint(read_checkpoint(trainer.wdir / "last.pt"), use_ema=True))
    path = save_scales(scales, save or trainer.save_dir / "scales.pt", model_name=cfg["name"])
    LOGGER.info("hyper-search: %d blocks' scales written to %s", len(scales), path)
    return scales
