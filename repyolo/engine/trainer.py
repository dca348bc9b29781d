"""The YOLOv6 training loop: CPU or CUDA, single process or DDP (torchrun), exact resume.

Outputs in ``project/name/``: ``weights/last.pt`` and ``weights/best.pt`` (written atomically
every epoch), ``results.csv``, ``metrics.json``, ``args.yaml``, TensorBoard scalars and PNG plots.
"""
from __future__ import annotations

import csv
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import yaml

from repyolo.engine.checkpoint import read_checkpoint, save_checkpoint
from repyolo.engine.ema import ModelEMA, unwrap
from repyolo.engine.optim import Schedule, build_optimizer
from repyolo.engine.recipe import resolve_recipe
from repyolo.errors import RepyoloError
from repyolo.utils.logging import get_logger

LOGGER = get_logger(__name__)
HYP_DEFAULTS = Path(__file__).resolve().parent.parent / "cfg" / "hyp.yaml"


class TrainingDiverged(RepyoloError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainArgs:
    """Everything ``repyolo train`` accepts (see ``repyolo train --help``)."""

    model: str | None = None            # None: the --weights checkpoint's architecture, else yolov6n
    data: str = ""
    epochs: int = 100
    img: int = 640
    batch: int = 16
    device: str = "cpu"
    project: str = "runs/train"
    name: str = "exp"
    weights: str | None = None
    resume: str | bool | None = None
    workers: int = 2
    seed: int = 0
    hyp: dict = field(default_factory=dict)
    exist_ok: bool = False
    teacher: str | None = None
    distill: bool = False
    sync_bn: bool = False
    amp: bool = True
    cache: str | None = None
    eval_interval: int | None = None
    rect_val: bool = True
    max_batches: int | None = None      # debugging / tests: cut every epoch after N batches
    no_val: bool = False
    fitness_weights: tuple = (0.0, 0.1, 0.9)   # (map75, map50, map) weights of the best-checkpoint score

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def load_hyp(overrides: dict | None = None, model_cfg: dict | None = None) -> dict:
    """Default hyper-parameters, model-specific values (lr0, mixup, ...) and user overrides."""
    hyp = yaml.safe_load(HYP_DEFAULTS.read_text())
    model_cfg = model_cfg or {}
    for key in ("lr0", "mixup", "atss_warmup_epochs"):
        if hyp.get(key) is None:
            hyp[key] = model_cfg.get(key, {"lr0": 0.01, "mixup": 0.0, "atss_warmup_epochs": 0}[key])
    if hyp.get("iou_type") is None:
        hyp["iou_type"] = model_cfg.get("loss", {}).get("iou_type", "giou")
    for k, v in (overrides or {}).items():
        if k not in hyp:
            raise RepyoloError(f"unknown hyper-parameter {k!r}; known: {', '.join(sorted(hyp))}")
        hyp[k] = v
    return hyp


def setup_distributed(device: str) -> tuple[int, int, int, torch.device]:
    """Initialise torch.distributed when launched by torchrun. Returns (rank, local_rank, world, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.lower() in ("cpu", ""):
        dev = torch.device("cpu")
    else:
        ids = [d for d in device.split(",") if d.strip()]
        if not torch.cuda.is_available():
            raise RepyoloError(f"--device {device} asks for CUDA, but torch sees no GPU (use --device cpu)")
        dev = torch.device("cuda", int(ids[local_rank % len(ids)]) if world > 1 else int(ids[0]))
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return rank, local_rank, world, dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """RNG states as tensors / plain Python values (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]), "python": list(random.getstate()[1]),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def transfer_weights(model: nn.Module, state: dict) -> tuple[int, int]:
    """Copy every tensor of ``state`` whose name and shape match ``model`` (fine-tuning with a
    different class count keeps everything but the class outputs). Returns (copied, total)."""
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matched, strict=False)
    return len(matched), len(own)


class Trainer:
    """Builds data, model, loss, optimizer and runs the epochs. ``Trainer(args).train() -> metrics dict``."""

    def __init__(self, args: TrainArgs):
        self.args = args
        self.rank, self.local_rank, self.world, self.device = setup_distributed(args.device)
        self.main = self.rank == 0
        self.resume_ckpt = None
        if args.resume:
            self._prepare_resume()
        self.save_dir = Path(self.args.project) / self.args.name
        if self.main:
            self._make_save_dir()
        self.wdir = self.save_dir / "weights"

    # ------------------------------------------------------------------ set-up
    def _prepare_resume(self) -> None:
        path = self.args.resume
        if path is True or path in ("", "True", "last"):
            path = str(Path(self.args.project) / self.args.name / "weights" / "last.pt")
        ckpt = read_checkpoint(path)
        saved = ckpt.get("args") or {}
        if not saved.get("data"):
            raise RepyoloError(f"{path}: checkpoint has no training arguments to resume from")
        keep = {k: v for k, v in saved.items() if k in TrainArgs.__dataclass_fields__}
        keep["fitness_weights"] = tuple(keep.get("fitness_weights", (0.0, 0.1, 0.9)))
        for k in ("device", "workers", "max_batches"):  # may differ on the resuming machine
            keep[k] = getattr(self.args, k)
        keep["resume"], keep["exist_ok"] = str(path), True
        self.args = TrainArgs(**keep)
        self.resume_ckpt = ckpt
        LOGGER.info("resuming %s from epoch %d", path, ckpt.get("epoch", -1) + 1)

    def _make_save_dir(self) -> None:
        base, name, n = Path(self.args.project), self.args.name, 2
        path = base / name
        if not self.args.exist_ok and not self.args.resume:
            while path.exists():
                path = base / f"{name}{n}"
                n += 1
            self.args.name = path.name
        (path / "weights").mkdir(parents=True, exist_ok=True)
        self.save_dir = path

    def _build(self) -> None:
        from repyolo.data.config import load_data_config
        from repyolo.data.loader import build_dataloader
        from repyolo.loss.detection import build_loss
        from repyolo.nn.model import build_model, load_model_config

        args = self.args
        seed_everything(args.seed + self.rank)
        self.data = load_data_config(args.data)
        nc, names = self.data.nc, list(self.data.names)

        # model: a config (fresh), or a checkpoint to fine-tune from (repyolo or official)
        init_state, model_cfg = None, None
        if args.weights and not self.resume_ckpt:
            ckpt = read_checkpoint(args.weights)
            if ckpt.get("fused"):
                raise RepyoloError(f"{args.weights}: a fused (deploy) checkpoint cannot be trained; "
                                   "use the training checkpoint (last.pt / best.pt)")
            model_cfg = ckpt["model_cfg"]
            init_state = ckpt.get("ema") or ckpt["model"]
        if self.resume_ckpt:
            model_cfg = self.resume_ckpt["model_cfg"]
        elif args.model or model_cfg is None:
            # an explicit --model wins over the checkpoint's architecture (matching weights still transfer)
            model_cfg = load_model_config(args.model or "yolov6n")
        self.hyp = load_hyp(args.hyp, model_cfg)
        if self.hyp.get("atss_warmup_epochs") is not None:
            model_cfg = {**model_cfg, "atss_warmup_epochs": self.hyp["atss_warmup_epochs"]}
        if args.distill and not model_cfg.get("head", {}).get("use_dfl", False):
            # self-distillation of box distributions needs DFL bins: the v3 DLD branch (dropped at deploy)
            model_cfg = {**model_cfg, "head": {**model_cfg.get("head", {}), "aux_dist": True}}
        model = build_model(model_cfg, num_classes=nc)
        model.names = names
        if init_state is not None:
            n, total = transfer_weights(model, {k: v.float() if v.is_floating_point() else v
                                                for k, v in init_state.items()})
            LOGGER.info("transferred %d/%d tensors from %s", n, total, args.weights)
        model.to(self.device)
        if args.sync_bn and self.world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model

        # data
        h = self.hyp
        aug = {k: h[k] for k in ("hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear",
                                 "flipud", "fliplr", "mosaic", "mixup")}
        stride = model.max_stride
        self.train_set = self.data.dataset("train", img_size=args.img, augment=True, hyp=aug,
                                          batch_size=args.batch, stride=stride, cache=args.cache, names=names,
                                          prefix="train: ", seed=args.seed, close_mosaic=h["close_mosaic"])
        self.train_loader = build_dataloader(self.train_set, args.batch, workers=args.workers, shuffle=True,
                                             seed=args.seed, rank=self.rank if self.world > 1 else -1,
                                             world_size=self.world, drop_last=False)
        self.val_set = None
        if self.main and not args.no_val:
            self.val_set = self.data.dataset("val", img_size=args.img, augment=False, rect=args.rect_val,
                                            batch_size=args.batch, stride=stride, names=names, prefix="val: ")

        nb = len(self.train_loader) if args.max_batches is None else min(len(self.train_loader), args.max_batches)
        self.nb = nb
        self.recipe = resolve_recipe(h, args.batch, nb, args.epochs, self.world)
        LOGGER.info("recipe %s (%s): accumulate %d, warm-up %d iterations, lr0 %.4g, EMA decay %.5f, "
                    "mosaic off for the last %d epochs (override: --recipe, --set key=value)", self.recipe.name,
                    self.recipe.reason, self.recipe.accumulate, self.recipe.warmup_iters, self.recipe.lr0,
                    self.recipe.ema_decay, self.recipe.close_mosaic)
        self.train_set.close_mosaic_epochs = self.recipe.close_mosaic
        self.distiller = None
        if args.distill:
            from repyolo.loss.distill import build_distiller  # the self-distillation stage

            self.distiller = build_distiller(model, args.teacher, h, args.epochs, self.device)
        if str(h["optimizer"]).lower() == "repopt":
            from repyolo.engine.repoptimizer import build_repoptimizer

            if not h.get("scales"):
                raise RepyoloError("optimizer RepOpt needs hyper-searched scales: --set scales=PATH "
                                   "(a scales file or a hyper-search checkpoint; see repoptimizer.hyper_search)")
            # a fresh run starts from the scales' merged kernels; fine-tuning and resume keep their weights
            self.optimizer = build_repoptimizer(model, h["scales"], self.recipe.lr0, h["momentum"],
                                                self.recipe.weight_decay,
                                                reinit=init_state is None and not self.resume_ckpt)
        else:
            if model_cfg.get("block") == "repopt":
                LOGGER.warning("a RepOpt model trained with %s: no gradient masks (use --set optimizer=RepOpt "
                               "--set scales=PATH)", h["optimizer"])
            self.optimizer = build_optimizer(model, h["optimizer"], self.recipe.lr0, h["momentum"],
                                             self.recipe.weight_decay)
        self.schedule = Schedule(self.recipe.lr0, args.epochs, h["lrf"], h["lr_schedule"], self.recipe.warmup_iters,
                                 h["warmup_bias_lr"], h["warmup_momentum"], h["momentum"])
        if self.distiller is not None and list(self.distiller.parameters()):
            # trainable feature-distillation adapters (CWD between different widths)
            self.optimizer.add_param_group({"params": list(self.distiller.parameters()),
                                            "weight_decay": self.recipe.weight_decay})
        self.ema = ModelEMA(model, self.recipe.ema_decay, self.recipe.ema_tau) if self.main else None
        self.criterion = build_loss(model, h)
        self.use_amp = args.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.start_epoch, self.best_fitness, self.step = 0, -1.0, 0
        if self.resume_ckpt:
            self._load_resume_state()
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def _load_resume_state(self) -> None:
        ck = self.resume_ckpt
        self.model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ck["model"].items()})
        if self.distiller is not None and ck.get("distiller"):
            self.distiller.load_state_dict(ck["distiller"])
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.ema is not None and ck.get("ema"):
            self.ema.ema.load_state_dict(ck["ema"])
            self.ema.updates = ck.get("ema_updates", 0)
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.start_epoch = ck["epoch"] + 1
        self.best_fitness = ck.get("best_fitness", -1.0)
        self.step = ck.get("step", 0)
        if ck.get("rng"):
            set_rng_state(ck["rng"])
        if self.start_epoch >= self.args.epochs:
            raise RepyoloError(f"{self.args.resume}: training already finished ({self.args.epochs} epochs)")

    # ------------------------------------------------------------------ loop
    def train(self) -> dict:
        self._build()
        args, h = self.args, self.hyp
        if self.main:
            (self.save_dir / "args.yaml").write_text(yaml.safe_dump(
                {**args.to_dict(), "hyp": h, "recipe": self.recipe.to_dict()}, sort_keys=False))
            self._tb = self._tensorboard()
            from repyolo.utils.train_plots import plot_labels

            try:
                plot_labels(self.train_set, self.save_dir / "labels.png")
            except Exception as exc:  # plots never stop training
                LOGGER.warning("label plot failed: %s", exc)
        metrics, t0 = {}, time.time()
        close_at = args.epochs - self.recipe.close_mosaic
        for epoch in range(self.start_epoch, args.epochs):
            if epoch >= close_at and hasattr(self.train_set, "close_mosaic"):
                self.train_set.close_mosaic()
            losses = self._train_epoch(epoch)
            metrics = {}
            last = epoch == args.epochs - 1
            interval = args.eval_interval or h.get("eval_interval", 1)
            if self.main and self.val_set is not None and (last or (epoch + 1) % interval == 0):
                metrics = self.evaluate(final=last)
            if self.main:
                self._end_epoch(epoch, losses, metrics, time.time() - t0)
            if self.world > 1:
                dist.barrier()
        result = {}
        if self.main:
            result = self._finish(time.time() - t0)
        if self.world > 1:
            dist.destroy_process_group()
        return result

    def _train_epoch(self, epoch: int) -> np.ndarray:
        from repyolo.data.loader import set_loader_epoch

        args, model, acc = self.args, self.model, self.recipe.accumulate
        model.train()
        set_loader_epoch(self.train_loader, epoch, args.epochs)
        mean_loss = torch.zeros(3)
        pbar = enumerate(self.train_loader)
        if self.main:
            from tqdm import tqdm

            pbar = tqdm(pbar, total=self.nb, desc=f"epoch {epoch + 1}/{args.epochs}", mininterval=2.0,
                        bar_format="{l_bar}{bar:20}{r_bar}", leave=True)
        self.optimizer.zero_grad(set_to_none=True)
        for i, (imgs, targets, _paths, _metas) in pbar:
            if i >= self.nb:
                break
            it = i + self.nb * epoch
            self.schedule.apply(self.optimizer, it, epoch)
            imgs = imgs.to(self.device, non_blocking=True).float() / 255
            targets = targets.to(self.device)
            with torch.autocast(self.device.type, enabled=self.use_amp):
                out = model(imgs)
                loss, items = self.criterion(out, targets, epoch, imgs.shape[0])
                if self.distiller is not None:
                    d_loss, _ = self.distiller(imgs, out, epoch + i / self.nb)  # alpha decays per iteration
                    loss = loss + d_loss
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} at epoch {epoch + 1}, batch {i}: training stopped; "
                    f"the last good checkpoint is {self.wdir / 'last.pt'} (try a lower lr0 or check the labels)")
            self.scaler.scale(loss).backward()
            if (it + 1) % acc == 0 or i == self.nb - 1:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), self.hyp["grad_clip"])
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                if self.ema is not None:
                    self.ema.update(model)
            mean_loss = (mean_loss * i + items.detach().float().cpu()) / (i + 1)
            if self.main:
                pbar.set_postfix_str(
                    f"cls {mean_loss[0]:.3f} iou {mean_loss[1]:.3f} dfl {mean_loss[2]:.3f} "
                    f"inst {targets.shape[0]} size {imgs.shape[-1]}", refresh=False)
        return mean_loss.numpy()

    def evaluate(self, final: bool = False) -> dict:
        """COCO mAP of the EMA model on the validation split (plots and predictions.json when ``final``)."""
        from repyolo.engine.evaluator import Evaluator

        model = self.ema.ema if self.ema else unwrap(self.model)
        if self.recipe.bn_recal_images > 0:
            self._recalibrate_bn(model)
        evaluator = Evaluator(dataset=self.val_set, batch_size=self.args.batch, workers=min(self.args.workers, 2),
                              conf_thres=self.hyp["conf_thres"], iou_thres=self.hyp["iou_thres"],
                              device=self.device, save_dir=self.save_dir if final else None, plots=final)
        return evaluator(model)

    def _recalibrate_bn(self, model: nn.Module) -> None:
        """Precise BN on evaluation-style (letterboxed, un-augmented) training images, fixed order."""
        from repyolo.data.loader import build_dataloader
        from repyolo.engine.precise_bn import recompute_bn_stats

        if getattr(self, "_bn_loader", None) is None:
            ds = self.data.dataset("train", img_size=self.args.img, augment=False, batch_size=self.args.batch,
                                   stride=model.max_stride, names=list(model.names), prefix="precise-BN: ",
                                   label_cache=True)
            self._bn_loader = build_dataloader(ds, self.args.batch, workers=min(self.args.workers, 2),
                                               shuffle=True, seed=self.args.seed)
        n = recompute_bn_stats(model, self._bn_loader, -(-self.recipe.bn_recal_images // self.args.batch),
                               self.device)
        LOGGER.debug("precise BN: statistics recomputed over %d batches", n)

    def _fitness(self, metrics: dict) -> float:
        w = self.args.fitness_weights
        return w[0] * metrics.get("map75", 0.0) + w[1] * metrics.get("map50", 0.0) + w[2] * metrics.get("map", 0.0)

    def _checkpoint(self, epoch: int, metrics: dict) -> dict:
        model = unwrap(self.model)
        cpu = lambda sd: {k: v.detach().cpu() for k, v in sd.items()}  # noqa: E731
        return {"model_cfg": model.cfg, "names": list(model.names), "fused": False,
                "model": cpu(model.state_dict()), "ema": cpu(self.ema.state_dict()) if self.ema else None,
                "ema_updates": self.ema.updates if self.ema else 0, "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.use_amp else None, "epoch": epoch, "step": self.step,
                "args": self.args.to_dict(), "hyp": self.hyp, "metrics": metrics,
                "best_fitness": self.best_fitness, "rng": rng_state(),
                "distiller": self.distiller.state_dict() if self.distiller is not None else None, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def _end_epoch(self, epoch: int, losses: np.ndarray, metrics: dict, elapsed: float) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        if metrics:
            fit = self._fitness(metrics)
            improved = fit > self.best_fitness
            self.best_fitness = max(fit, self.best_fitness)
        else:  # no evaluation this epoch: without validation at all, best.pt follows last.pt
            improved = self.val_set is None or not (self.wdir / "best.pt").exists()
        ckpt = self._checkpoint(epoch, metrics)
        save_checkpoint(ckpt, self.wdir / "last.pt")
        if improved:
            save_checkpoint(ckpt, self.wdir / "best.pt")
        row = {"epoch": epoch + 1, "lr": round(lr, 6), "train/cls": round(float(losses[0]), 5),
               "train/iou": round(float(losses[1]), 5), "train/dfl": round(float(losses[2]), 5),
               **{f"val/{k}": round(float(metrics[k]), 5) for k in ("map50", "map", "map75") if k in metrics},
               "time_s": round(elapsed, 1)}
        path = self.save_dir / "results.csv"
        rows = list(csv.DictReader(path.open())) if path.exists() else []
        rows = [r for r in rows if int(r["epoch"]) < epoch + 1] + [row]
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        if self._tb is not None:
            for k, v in row.items():
                if k != "epoch":
                    self._tb.add_scalar(k, v, epoch + 1)
        if metrics:
            LOGGER.info("epoch %d: mAP@0.5 %.4f  mAP@0.5:0.95 %.4f", epoch + 1, metrics.get("map50", 0),
                        metrics.get("map", 0))

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter

            return SummaryWriter(str(self.save_dir))
        except Exception as exc:  # tensorboard is optional at run time
            LOGGER.warning("TensorBoard logging off: %s", exc)
            return None

    def _finish(self, elapsed: float) -> dict:
        best = self.wdir / "best.pt"
        ck = read_checkpoint(best)
        metrics = dict(ck.get("metrics") or {})
        summary = {"best_epoch": ck["epoch"] + 1, "epochs": self.args.epochs, "train_time_s": round(elapsed, 1),
                   "recipe": self.recipe.to_dict(), **metrics}
        (self.save_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=float))
        if self._tb is not None:
            self._tb.close()
        try:
            from repyolo.utils.train_plots import plot_results

            plot_results(self.save_dir / "results.csv", self.save_dir / "results.png")
        except Exception as exc:
            LOGGER.warning("results plot failed: %s", exc)
        LOGGER.info("done in %.1f min; weights in %s", elapsed / 60, self.wdir)
        return summary


def train(**kwargs) -> dict:
    """Python entry point: ``repyolo.engine.trainer.train(model='yolov6n', data='data.yaml', epochs=10)``."""
    hyp = kwargs.pop("hyp", {}) or {}
    return Trainer(TrainArgs(hyp=hyp, **kwargs)).train()
