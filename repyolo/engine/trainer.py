"""The YOLOv6 training loop: CPU or CUDA, single process or DDP (torchrun), exact resume.

Outputs in the run folder (``project/name``, or beside the checkpoint a run resumes):
``weights/last.pt`` and ``weights/best.pt`` (written atomically every epoch), ``results.csv``,
``metrics.json``, ``args.yaml`` (the effective settings), TensorBoard scalars and PNG plots.

Settings: :class:`~repyolo.cfg.settings.TrainArgs` (the run) and one
:class:`~repyolo.cfg.settings.Hyp` resolved from the defaults, the model config and the user's
overrides; :func:`~repyolo.engine.recipe.resolve_recipe` turns it and the run's size into the
schedule constants. Every input (data YAML, model, weights, teacher) is validated before the run
folder is created, so a failed start leaves nothing behind.
"""
from __future__ import annotations

import copy
import csv
import itertools
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import yaml

from repyolo.cfg.settings import Hyp, TrainArgs
from repyolo.data.config import load_data_config
from repyolo.data.loader import build_dataloader, set_loader_epoch
from repyolo.engine.accel import CompiledForward, autocast_dtype, native_bf16, use_channels_last
from repyolo.engine.ema import ModelEMA, unwrap
from repyolo.engine.evaluator import Evaluator
from repyolo.engine.metrics import nan_to_none
from repyolo.engine.optim import Schedule, build_optimizer
from repyolo.engine.precise_bn import recompute_bn_stats, unfold_identity_batchnorms
from repyolo.engine.recipe import describe_eval_epochs, eval_epochs, resolve_recipe
from repyolo.errors import RepyoloError
from repyolo.io.checkpoint import load_model, read_checkpoint, remove_stale_temp_files, save_checkpoint
from repyolo.loss.detection import build_loss
from repyolo.nn.model import build_model, load_model_config
from repyolo.ops.image import to_model_input
from repyolo.utils.device import select_device
from repyolo.utils.flops import count_gflops, count_params
from repyolo.utils.logging import get_logger
from repyolo.utils.memory import keep_freed_memory
from repyolo.utils.paths import check_output_dir, claim_run_dir, ensure_writable_dir
from repyolo.utils.seeding import rng_state, seed_everything, set_rng_state
from repyolo.utils.threads import apply_threads, thread_governor

LOGGER = get_logger(__name__)
DEFAULT_PROJECT, DEFAULT_NAME = "runs/train", "exp"
# evaluation images (and precise-BN batches) are kept in RAM when they need at most this much
EVAL_RAM_CACHE_BYTES = 1 << 30

__all__ = ["Trainer", "TrainArgs", "TrainingDiverged", "train", "transfer_weights"]


class TrainingDiverged(RepyoloError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def setup_distributed(device: str) -> tuple[int, int, int, torch.device]:
    """Initialise torch.distributed when launched by torchrun. Returns (rank, local_rank, world, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = select_device(device, local_rank if world > 1 else 0)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return rank, local_rank, world, dev


def transfer_weights(model: nn.Module, state: dict) -> tuple[int, int]:
    """Copy every tensor of ``state`` whose name and shape match ``model`` (fine-tuning with a
    different class count keeps everything but the class outputs). Returns (copied, total)."""
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matched, strict=False)
    return len(matched), len(own)


def _float_state(state: dict) -> dict:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to: ``run/weights/last.pt`` -> ``run``."""
    return checkpoint.parent.parent if checkpoint.parent.name == "weights" else checkpoint.parent


def _check_latest(path: Path, epoch: int) -> None:
    """Refuse to resume from a checkpoint older than the ``last.pt`` beside it (``best.pt`` of a
    later run, say): resuming would overwrite the later epochs."""
    last = path.parent / "last.pt"
    if last.is_file() and last.resolve() != path.resolve():
        later = int(read_checkpoint(last).get("epoch", -1))
        if later > epoch:
            raise RepyoloError(f"{path}: epoch {epoch + 1}, but {last} beside it has reached epoch {later + 1}; "
                               f"resume from {last} (resuming this file would overwrite the later epochs)")


class Trainer:
    """Builds data, model, loss, optimizer and runs the epochs. ``Trainer(args).train() -> metrics dict``.

    The constructor validates every input and claims the run folder (``save_dir``); nothing is
    written before the inputs are known to be usable.
    """

    def __init__(self, args: TrainArgs):
        self.args = args
        self.rank, self.local_rank, self.world, self.device = setup_distributed(args.device)
        self.main = self.rank == 0
        # intra-op threads: the cores this process may use minus its loader workers (logged)
        local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        self.threads = apply_threads(args.threads, args.workers, who="train", processes=local_procs)
        self.governor = None
        if self.device.type == "cpu":
            # unless the count was fixed: all cores while the machine is quiet, the count above when
            # other processes compete (repyolo.utils.threads)
            self.governor = thread_governor(args.threads, args.workers, who="train", processes=local_procs)
            keep_freed_memory()  # steps reuse freed activation memory (repyolo.utils.memory)
        # built on first use and kept: seconds of the current epoch's phases, whether the val images
        # are cached in RAM, the precise-BN loader and its collated batches
        self.times: dict | None = None
        self._val_cached: bool | None = None
        self._bn_loader = None
        self._bn_batches = None
        self.resume_ckpt = None
        self._tb = None
        run_dir = None
        if args.resume:
            run_dir = self._prepare_resume()
        if run_dir is None:
            run_dir = Path(self.args.project or DEFAULT_PROJECT) / (self.args.name or DEFAULT_NAME)
        reuse = self.resume_ckpt is not None or self.args.exist_ok
        if self.main:  # an unwritable output fails now, before data and model are loaded
            check_output_dir(run_dir if reuse else run_dir.parent)
        self._build()
        if self.main:
            run_dir = ensure_writable_dir(run_dir) if reuse else claim_run_dir(run_dir)
            ensure_writable_dir(run_dir / "weights")
            removed = remove_stale_temp_files(run_dir / "weights")
            if removed:
                LOGGER.info("removed %d unfinished checkpoint file(s) left by an interrupted run", removed)
        self.save_dir = run_dir
        self.args.project, self.args.name = str(run_dir.parent), run_dir.name
        self.wdir = self.save_dir / "weights"
        if self.main:
            self._log_start()

    # ------------------------------------------------------------------ set-up
    def _prepare_resume(self) -> Path:
        """Read the checkpoint to resume; returns the run folder to write into: beside the
        checkpoint, or ``--project/--name`` when given (never the folder recorded inside it)."""
        path = self.args.resume
        if path in (True, "", "True", "last"):
            path = str(Path(self.args.project or DEFAULT_PROJECT) / (self.args.name or DEFAULT_NAME) / "weights"
                       / "last.pt")
        path = Path(path)
        ckpt = read_checkpoint(path)
        saved = dict(ckpt.get("args") or {})
        if not saved.get("data"):
            raise RepyoloError(f"{path}: checkpoint has no training arguments to resume from")
        run_dir = _run_dir_of(path)
        if self.args.project or (self.args.name and self.args.name != run_dir.name):
            run_dir = Path(self.args.project or DEFAULT_PROJECT) / (self.args.name or DEFAULT_NAME)
        for k in ("device", "workers", "threads", "max_batches"):  # may differ on the resuming machine
            saved[k] = getattr(self.args, k)
        saved.update(resume=str(path), exist_ok=True)
        self.args = TrainArgs.from_dict(saved)
        if int(ckpt.get("epoch", -1)) + 1 >= self.args.epochs:
            raise RepyoloError(f"{path}: training already finished ({self.args.epochs} epochs)")
        _check_latest(path, int(ckpt.get("epoch", -1)))
        self.resume_ckpt = ckpt
        LOGGER.info("resuming %s from epoch %d, writing to %s", path, ckpt.get("epoch", -1) + 1, run_dir)
        return run_dir

    def _log_start(self) -> None:
        """The run folder and a one-line model summary, before the first epoch."""
        model = unwrap(self.model)
        try:
            gflops = f"{count_gflops(model, self.args.img):.2f} GFLOPs at {self.args.img} px"
        except Exception as exc:  # noqa: BLE001 - a summary line never stops training
            gflops = f"GFLOPs not counted ({type(exc).__name__})"
        names = list(model.names)
        shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
        LOGGER.info("run folder %s", self.save_dir)
        LOGGER.info("model %s: %.2fM parameters, %s, %d classes (%s), recipe %s, %d epochs of %d batches",
                    model.cfg.get("name", "?"), count_params(model) / 1e6, gflops, model.nc, shown,
                    self.recipe.name, self.args.epochs, self.nb)
        if self.val_set is not None and self.val_set.report.n_boxes == 0:
            LOGGER.warning("val: the split has no labels: mAP is undefined, so best.pt follows last.pt "
                           "(the latest epoch)")

    def _write_args(self) -> None:
        """``args.yaml``: the run's arguments, the configured hyper-parameters (``hyp``), the recipe,
        and ``effective``: every value the recipe changed, configured next to what training uses."""
        h, r = self.hyp, self.recipe
        effective = {
            "lr0": {"configured": h.lr0, "effective": r.lr0},
            "weight_decay": {"configured": h.weight_decay, "effective": r.weight_decay},
            "warmup": {"configured": f"{h.warmup_epochs:g} epochs"
                                     + (f", >= {h.warmup_min_iters} iterations" if r.name == "yolov6" else ""),
                       "effective": f"{r.warmup_iters} iterations"},
            "accumulate": {"configured": f"to a nominal batch of {h.nominal_batch}"
                                         if r.name == "yolov6" else "none (small recipe)",
                           "effective": r.accumulate},
            "ema_decay": {"configured": h.ema_decay, "effective": r.ema_decay},
            "ema_tau": {"configured": h.ema_tau, "effective": r.ema_tau},
            "close_mosaic": {"configured": h.close_mosaic, "effective": r.close_mosaic},
            "bn_recal_images": {"configured": h.bn_recal_images, "effective": r.bn_recal_images},
        }
        header = (f"# repyolo training run. 'hyp' holds the configured hyper-parameters (defaults, model config,\n"
                  f"# --hyp / --set); the '{r.name}' recipe rescales some of them for this run's length and\n"
                  f"# batch: 'effective' lists each such value as configured and as used.\n")
        body = yaml.safe_dump({**self.args.to_dict(), "hyp": h.to_dict(), "recipe": r.to_dict(),
                               "effective": effective}, sort_keys=False)
        (self.save_dir / "args.yaml").write_text(header + body)

    def _initial_model_config(self) -> tuple[dict, dict | None]:
        """The model config to build and the weights to start from (``--weights``), validated."""
        args = self.args
        if self.resume_ckpt:
            return self.resume_ckpt["model_cfg"], None
        init_state, model_cfg = None, None
        if args.weights:
            ckpt = read_checkpoint(args.weights)
            if ckpt.get("fused"):
                raise RepyoloError(f"{args.weights}: a fused (deploy) checkpoint cannot be trained; "
                                   "use the training checkpoint (last.pt / best.pt)")
            model_cfg = ckpt["model_cfg"]
            init_state = ckpt.get("ema") or ckpt["model"]
        if args.model or model_cfg is None:
            # an explicit --model wins over the checkpoint's architecture (matching weights still transfer)
            model_cfg = load_model_config(args.model or "yolov6n")
        return model_cfg, init_state

    def _build(self) -> None:
        args = self.args
        seed_everything(args.seed + self.rank)
        self.data = load_data_config(args.data)
        nc, names = self.data.nc, list(self.data.names)
        model_cfg, init_state = self._initial_model_config()
        self.hyp = Hyp.resolve(model_cfg, args.hyp)
        if args.img is None:
            args.img = int(model_cfg.get("img_size", 640))
        teacher = None
        if args.distill:
            if not args.teacher:
                raise RepyoloError("--distill needs --teacher TEACHER.pt")
            teacher = load_model(args.teacher)
            if not model_cfg.get("head", {}).get("use_dfl", False):
                # distillation of box distributions needs DFL bins: the v3 DLD branch (dropped at deploy)
                model_cfg = {**model_cfg, "head": {**model_cfg.get("head", {}), "aux_dist": True}}
        model = build_model(model_cfg, num_classes=nc)
        model.names = names
        if init_state is not None:
            n, total = transfer_weights(model, _float_state(init_state))
            LOGGER.info("transferred %d/%d tensors from %s", n, total, args.weights)
        model.to(self.device)
        if args.sync_bn and self.world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.memory_format = torch.contiguous_format
        if use_channels_last(self.device, args.channels_last):
            model.to(memory_format=torch.channels_last)
            self.memory_format = torch.channels_last
        self.model = model

        h = self.hyp
        stride = model.max_stride
        self.train_set = self.data.dataset("train", img_size=args.img, augment=True, hyp=h.augmentation(),
                                           batch_size=args.batch, stride=stride, cache=args.cache, names=names,
                                           prefix="train: ", seed=args.seed)
        self.train_loader = build_dataloader(self.train_set, args.batch, workers=args.workers, shuffle=True,
                                             seed=args.seed, rank=self.rank if self.world > 1 else -1,
                                             world_size=self.world, drop_last=False,
                                             pin_memory=self.device.type == "cuda")
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
        self.distiller = None
        if teacher is not None:
            from repyolo.loss.distill import build_distiller  # the self-distillation stage

            self.distiller = build_distiller(model, teacher, h, args.epochs, self.device, source=str(args.teacher))
        self.optimizer = self._optimizer(model, fresh=init_state is None and not self.resume_ckpt)
        self.schedule = Schedule(self.recipe.lr0, args.epochs, h.lrf, h.lr_schedule, self.recipe.warmup_iters,
                                 h.warmup_bias_lr, h.warmup_momentum, h.momentum)
        if self.distiller is not None and list(self.distiller.parameters()):
            # trainable feature-distillation adapters (CWD between different widths)
            self.optimizer.add_param_group({"params": list(self.distiller.parameters()),
                                            "weight_decay": self.recipe.weight_decay})
        if init_state is not None and h.unfold_bn_images > 0:
            self._unfold_batchnorms(model)
        self.ema = ModelEMA(model, self.recipe.ema_decay, self.recipe.ema_tau) if self.main else None
        self.criterion = build_loss(model, h)
        self.amp_dtype = autocast_dtype(self.device, args.amp, args.bf16)
        self.use_amp = self.amp_dtype is torch.float16  # float16 needs loss scaling, bfloat16 does not
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        LOGGER.info("training precision: %s", {
            None: "float32" + (" (bfloat16 autocast, ~1.8x faster on this CPU, is off)" if self.device.type == "cpu"
                               and native_bf16() else ""),
            torch.float16: "float16 autocast (--no-amp for float32)",
            torch.bfloat16: "bfloat16 autocast, native on this CPU (--no-amp for float32)"}[self.amp_dtype])
        self.start_epoch, self.best_fitness, self.step = 0, -1.0, 0
        if self.resume_ckpt:
            self._load_resume_state()
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.forward = CompiledForward(self.model, options={"layout_optimization": False}) if args.compile \
            else self.model
        if args.compile:
            LOGGER.info("torch.compile on: the first steps compile the training graph (minutes on a CPU)")

    def _optimizer(self, model: nn.Module, fresh: bool):
        h = self.hyp
        if h.optimizer == "RepOpt":
            from repyolo.engine.repoptimizer import build_repoptimizer

            if not h.scales:
                raise RepyoloError("optimizer RepOpt needs hyper-searched scales: --set scales=PATH "
                                   "(a scales file or a hyper-search checkpoint; see repyolo.engine.hypersearch)")
            # a fresh run starts from the scales' merged kernels; fine-tuning and resume keep their weights
            return build_repoptimizer(model, h.scales, self.recipe.lr0, h.momentum, self.recipe.weight_decay,
                                      reinit=fresh)
        if model.cfg.get("block") == "repopt":
            LOGGER.warning("a RepOpt model trained with %s: no gradient masks (use --set optimizer=RepOpt "
                           "--set scales=PATH)", h.optimizer)
        return build_optimizer(model, h.optimizer, self.recipe.lr0, h.momentum, self.recipe.weight_decay)

    def _load_resume_state(self) -> None:
        ck = self.resume_ckpt
        self.model.load_state_dict(_float_state(ck["model"]))
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

    # ------------------------------------------------------------------ loop
    def train(self) -> dict:
        args = self.args
        if self.main:
            self._write_args()
            self._tb = self._tensorboard()
            from repyolo.utils.train_plots import plot_labels

            try:
                plot_labels(self.train_set, self.save_dir / "labels.png")
            except Exception as exc:  # plots never stop training
                LOGGER.warning("label plot failed: %s", exc)
        metrics, t0 = {}, time.time()
        close_at = args.epochs - self.recipe.close_mosaic
        evals = set(eval_epochs(args.epochs, args.eval_interval))
        if self.main and self.val_set is not None:
            LOGGER.info("evaluating after epochs %s (%s; --eval-interval N to change)", describe_eval_epochs(
                sorted(evals)), f"every {args.eval_interval}" if args.eval_interval else "automatic schedule")
        for epoch in range(self.start_epoch, args.epochs):
            t_epoch = time.perf_counter()
            losses = self._train_epoch(epoch, strong_aug=epoch < close_at)
            self.times = {"train": time.perf_counter() - t_epoch, "precise_bn": 0.0, "val": 0.0}
            metrics = {}
            if self.main and self.val_set is not None and epoch + 1 in evals:
                metrics = self.evaluate(final=epoch == args.epochs - 1)
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

    def _train_epoch(self, epoch: int, strong_aug: bool = True) -> np.ndarray:
        """One epoch; returns the mean ``[cls, iou, dfl]`` losses.

        The loss values stay on the device and are read back (a host-device sync on CUDA) only
        every ``sync_every`` steps: every step on a CPU, where reading costs nothing, else every
        10 steps. A non-finite loss stops training at the first read that sees it (on a CPU:
        before its backward pass, as before).
        """
        args, model, acc = self.args, self.model, self.recipe.accumulate
        model.train()
        set_loader_epoch(self.train_loader, epoch, strong_aug)
        loss_sum = torch.zeros(3, device=self.device)
        bad = torch.zeros((), dtype=torch.bool, device=self.device)
        sync_every = 1 if self.device.type == "cpu" else 10
        pbar = enumerate(self.train_loader)
        if self.main:
            from tqdm import tqdm

            pbar = tqdm(pbar, total=self.nb, desc=f"epoch {epoch + 1}/{args.epochs}", mininterval=2.0,
                        bar_format="{l_bar}{bar:20}{r_bar}", leave=True)
        self.optimizer.zero_grad(set_to_none=True)
        n, first_unread = 0, 0
        for i, (imgs, targets, _paths, _metas) in pbar:
            if i >= self.nb:
                break
            it = i + self.nb * epoch
            if self.governor is not None:
                self.governor.tick()
            self.schedule.apply(self.optimizer, it, epoch)
            imgs = to_model_input(imgs.contiguous(memory_format=self.memory_format), self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                out = self.forward(imgs)
            # the losses run in float32 (the head's predictions already are, nn/head.py): the
            # assigner's IoUs and the DFL expectation would lose digits in float16 / bfloat16
            loss, items = self.criterion(out, targets, epoch, imgs.shape[0])  # targets stay on the host
            if self.distiller is not None:
                d_loss, _ = self.distiller(imgs, out, epoch + i / self.nb)  # alpha decays per iteration
                loss = loss + d_loss
            bad |= ~torch.isfinite(loss.detach())
            loss_sum += items.detach().float()
            n += 1
            if n % sync_every == 0 or i == self.nb - 1:
                self._check_finite(bad, loss, epoch, first_unread, i)
                first_unread = i + 1
            self.scaler.scale(loss).backward()
            if (it + 1) % acc == 0 or i == self.nb - 1:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), self.hyp.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                if self.ema is not None:
                    self.ema.update(model)
            if self.main and first_unread == i + 1:
                mean_loss = loss_sum.cpu() / n
                pbar.set_postfix_str(
                    f"cls {mean_loss[0]:.3f} iou {mean_loss[1]:.3f} dfl {mean_loss[2]:.3f} "
                    f"inst {targets.shape[0]} size {imgs.shape[-1]}", refresh=False)
        self._check_finite(bad, loss if n else None, epoch, first_unread, max(n - 1, 0))
        return (loss_sum.cpu() / max(n, 1)).numpy()

    def _check_finite(self, bad: torch.Tensor, loss, epoch: int, first: int, last: int) -> None:
        """Raise :class:`TrainingDiverged` when a loss since the last check was NaN or infinite."""
        if loss is None or not bool(bad):
            return
        where = f"batch {last}" if first >= last else f"batches {first}..{last}"
        raise TrainingDiverged(
            f"loss became {loss.item() if not torch.isfinite(loss) else 'nan/inf'} at epoch {epoch + 1}, {where}: "
            f"training stopped; the last good checkpoint is {self.wdir / 'last.pt'} "
            "(try a lower lr0 or check the labels)")

    def evaluate(self, final: bool = False) -> dict:
        """COCO mAP of the EMA model on the validation split (plots and predictions.json when ``final``).

        Precise BN (when the recipe asks for it) recomputes the EMA model's BN statistics first;
        evaluation then runs on a fused copy (the same function in eval mode, 1.3-1.6x faster).
        The validation images are decoded once and kept in RAM when they fit
        (``EVAL_RAM_CACHE_BYTES``); the seconds of both phases land in ``self.times``.
        """
        model = self.ema.ema if self.ema else unwrap(self.model)
        t0 = time.perf_counter()
        if self.recipe.bn_recal_images > 0:
            self._recalibrate_bn(model)
        t1 = time.perf_counter()
        if self._val_cached is None:
            self._val_cached = _cache_in_ram(self.val_set, self.args.workers)
        fused = copy.deepcopy(model).eval().fuse()
        evaluator = Evaluator(dataset=self.val_set, batch_size=self.args.batch,
                              workers=0 if self._val_cached else min(self.args.workers, 2),
                              conf_thres=self.hyp.conf_thres, iou_thres=self.hyp.iou_thres, device=self.device,
                              save_dir=self.save_dir if final else None, plots=final, threads=self.threads,
                              progress=True)
        metrics = evaluator(fused)
        times = self.times
        if times is not None:
            times["precise_bn"], times["val"] = t1 - t0, time.perf_counter() - t1
        return metrics

    def _plain_train_loader(self, model: nn.Module):
        """Evaluation-style (letterboxed, un-augmented) training images in a fixed shuffled order, for
        BN statistics (built once)."""
        if self._bn_loader is None:
            ds = self.data.dataset("train", img_size=self.args.img, augment=False, batch_size=self.args.batch,
                                   stride=model.max_stride, names=list(model.names), prefix="BN statistics: ",
                                   label_cache=True)
            self._bn_loader = build_dataloader(ds, self.args.batch, workers=min(self.args.workers, 2),
                                               shuffle=True, seed=self.args.seed)
        return self._bn_loader

    def _recalibrate_bn(self, model: nn.Module) -> None:
        """Precise BN on evaluation-style training images in a fixed order; the batches are collated
        once and kept in RAM when they fit, for every later evaluation."""
        n_batches = -(-self.recipe.bn_recal_images // self.args.batch)
        if self._bn_batches is None:
            loader = self._plain_train_loader(model)
            need = min(n_batches, len(loader)) * self.args.batch * 3 * self.args.img ** 2
            self._bn_batches = [b[:1] for b in itertools.islice(loader, n_batches)] \
                if need <= EVAL_RAM_CACHE_BYTES else loader
        n = recompute_bn_stats(model, self._bn_batches, n_batches, self.device, autocast_dtype=self.amp_dtype,
                               memory_format=self.memory_format, progress=True)
        LOGGER.debug("precise BN: statistics recomputed over %d batches", n)

    def _unfold_batchnorms(self, model: nn.Module) -> None:
        """Start weights from a deploy file (folded BNs, e.g. imported NCNN): give their identity BNs the
        statistics of the training images, so that training-mode BN starts from the imported function."""
        n_bn, n = unfold_identity_batchnorms(model, self._plain_train_loader(model),
                                             -(-self.hyp.unfold_bn_images // self.args.batch), self.device)
        if n_bn:
            LOGGER.info("%d identity BatchNorms in the start weights (folded deploy weights): statistics "
                        "estimated on %d batches of training images, the network computes the same "
                        "(--set unfold_bn_images=0 to skip)", n_bn, n)

    def _fitness(self, metrics: dict) -> float:
        w = self.args.fitness_weights
        return w[0] * metrics.get("map75", 0.0) + w[1] * metrics.get("map50", 0.0) + w[2] * metrics.get("map", 0.0)

    def _checkpoint(self, epoch: int, metrics: dict) -> dict:
        model = unwrap(self.model)
        # contiguous: checkpoints hold the default memory format whatever the training used
        cpu = lambda sd: {k: v.detach().cpu().contiguous() for k, v in sd.items()}  # noqa: E731
        return {"model_cfg": model.cfg, "names": list(model.names), "fused": False,
                "model": cpu(model.state_dict()), "ema": cpu(self.ema.state_dict()) if self.ema else None,
                "ema_updates": self.ema.updates if self.ema else 0, "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.use_amp else None, "epoch": epoch, "step": self.step,
                "args": self.args.to_dict(), "hyp": self.hyp.to_dict(), "metrics": metrics,
                "best_fitness": self.best_fitness, "rng": rng_state(),
                "distiller": self.distiller.state_dict() if self.distiller is not None else None,
                "date": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def _end_epoch(self, epoch: int, losses: np.ndarray, metrics: dict, elapsed: float) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        fit = self._fitness(metrics) if metrics else float("nan")
        if metrics and math.isfinite(fit):
            improved = fit > self.best_fitness
            self.best_fitness = max(fit, self.best_fitness)
        else:  # no (defined) evaluation this epoch: best.pt follows last.pt until an mAP exists
            improved = self.val_set is None or self.best_fitness < 0 or not (self.wdir / "best.pt").exists()
        ckpt = self._checkpoint(epoch, metrics)
        save_checkpoint(ckpt, self.wdir / "last.pt")
        if improved:
            save_checkpoint(ckpt, self.wdir / "best.pt")
        row = {"epoch": epoch + 1, "lr": round(lr, 6), "train/cls": round(float(losses[0]), 5),
               "train/iou": round(float(losses[1]), 5), "train/dfl": round(float(losses[2]), 5),
               **{f"val/{k}": round(float(metrics[k]), 5) for k in ("map50", "map", "map75") if k in metrics},
               "time_s": round(elapsed, 1)}
        times = self.times or {}
        row.update({f"time/{k}_s": round(v, 2) for k, v in times.items()})
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
        split = f" ({times['train']:.1f} s train, {times['precise_bn']:.1f} s precise BN, {times['val']:.1f} s val)" \
            if times else ""
        if metrics and not math.isfinite(fit):
            LOGGER.info("epoch %d: mAP undefined (the val split has no labels); best.pt = last.pt%s", epoch + 1, split)
        elif metrics:
            LOGGER.info("epoch %d: mAP@0.5 %.4f  mAP@0.5:0.95 %.4f%s", epoch + 1, metrics.get("map50", 0),
                        metrics.get("map", 0), split)
        elif split:
            LOGGER.debug("epoch %d%s", epoch + 1, split)

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            LOGGER.info("TensorBoard logging off: pip install 'repyolo[tensorboard]' to turn it on")
            return None
        return SummaryWriter(str(self.save_dir))

    def _finish(self, elapsed: float) -> dict:
        ck = read_checkpoint(self.wdir / "best.pt")
        metrics = dict(ck.get("metrics") or {})
        summary = {"best_epoch": ck["epoch"] + 1, "epochs": self.args.epochs, "train_time_s": round(elapsed, 1),
                   "recipe": self.recipe.to_dict(), **metrics}
        summary = nan_to_none(summary)  # an undefined mAP (no val labels) is null, valid JSON
        (self.save_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=float))
        if self._tb is not None:
            self._tb.close()
        from repyolo.utils.train_plots import plot_results

        try:
            plot_results(self.save_dir / "results.csv", self.save_dir / "results.png")
        except Exception as exc:  # plots never fail a finished run
            LOGGER.warning("results plot failed: %s", exc)
        if metrics and summary.get("map") is None:
            LOGGER.info("mAP undefined: the val split has no labels; best.pt is the last epoch")
        elif summary.get("map") is not None:
            LOGGER.info("best epoch %d: mAP@0.5 %.4f  mAP@0.5:0.95 %.4f", summary["best_epoch"], summary["map50"],
                        summary["map"])
        LOGGER.info("done in %.1f min; weights in %s", elapsed / 60, self.wdir)
        return summary


def _cache_in_ram(dataset, workers: int) -> bool:
    """Decode ``dataset``'s images once and keep them in RAM when they need at most
    ``EVAL_RAM_CACHE_BYTES`` (evaluation then reads no file and needs no loader processes)."""
    if dataset is None or getattr(dataset, "ims", None) is not None:
        return dataset is not None
    cache = getattr(dataset, "cache_images", None)
    return bool(cache and cache(EVAL_RAM_CACHE_BYTES, workers))


def train(**kwargs) -> dict:
    """Python entry point: ``repyolo.engine.trainer.train(model='yolov6n', data='data.yaml', epochs=10)``."""
    return Trainer(TrainArgs(**kwargs)).train()
