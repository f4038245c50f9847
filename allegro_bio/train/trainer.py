"""The training loop: data → statistics → model → Adam (+SAM) with EMA → checkpoints → deployed model.

Run directory layout (``cfg.run_dir``)::

    config.yaml        the resolved configuration (``--resume`` reads it back)
    checkpoint.pt      latest state: weights, EMA, optimiser, scheduler, RNG, epoch, step, best
    log.csv            one row per epoch: losses, validation MAE/RMSE, learning rate, time
    learning_curve.png
    model.pt           the deployed best (EMA) model, metrics and data description in its metadata
    parity_val.png, parity_test.png, summary.json

Per-epoch lines and the final summary table go to the ``allegro_bio.train.trainer`` logger (the
``allegro-bio train`` command shows them on the console); progress bars to stderr (tqdm).

Exact resume: the batch order of epoch e is a permutation drawn from (seed, e), and a checkpoint
records how many batches of the current epoch are done, so a run killed at any point and resumed
from its last checkpoint repeats exactly the steps an uninterrupted run takes.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..deploy import save
from ..errors import ConfigError
from ..model import AllegroPotential, build_from_config
from ..model.config import preset_config
from .config import TrainConfig
from .data import DataError, GraphDataset, LazySpiceFrames, collate, detect_format, index_spice, read_frames
from .evaluate import evaluate_dataset, format_table, parity_plot
from .loss import loss_terms
from .optim import EMA, SAM
from .predict import predict
from .stats import DatasetStats, compute_stats

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
CSV_FIELDS = ["epoch", "step", "lr", "train_loss", "val_loss", "val_energy_mae", "val_energy_rmse", "val_forces_mae",
              "val_forces_rmse", "seconds"]


@dataclass
class TrainResult:
    """What a finished run produced: the deployed model file and its metrics (eV/atom, eV/Å)."""

    run_dir: Path
    model_path: Path
    metrics: dict[str, dict[str, float]]
    stats: DatasetStats
    epochs_run: int
    stopped_because: str


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def _require(cfg: TrainConfig) -> tuple[str, ...]:
    need = ["forces"]
    if cfg.optim.loss != "forces":
        need.append("energy")
    return tuple(need)


def _read_all(paths: Sequence[str], cfg: TrainConfig, require: tuple[str, ...], limit: int | None = None):
    d = cfg.data
    if d.lazy:
        fmts = {d.format or detect_format(p) for p in paths}
        if fmts != {"spice"} or len(paths) != 1:
            raise ConfigError("data.lazy works with one SPICE HDF5 file per split (other formats are read into memory)")
        index = index_spice(paths[0], d.spice_subsets, d.spice_energy, d.max_force)
        if limit is not None:
            index = dataclasses.replace(index, entries=index.entries[:limit])
        if not index.entries:
            raise DataError(f"{paths[0]}: no frames left after subset/max_force selection")
        return LazySpiceFrames(index)
    frames = []
    for p in paths:
        frames.extend(read_frames(p, d.format, require=require, spice_subsets=d.spice_subsets, spice_energy=d.spice_energy,
                                  max_force=d.max_force))
    if limit is not None:
        frames = frames[:limit]
    if not frames:
        raise DataError(f"no frames in {list(paths)} (after max_force/subset filters)")
    return frames


def _group_key(frames, k: int) -> Any:
    if isinstance(frames, LazySpiceFrames):
        return frames.index.entries[k][0]
    info = frames[k].info
    if "config_id" in info:
        return (info.get("source_file"), str(info["config_id"]))
    return k


def split_validation(frames, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Hold out ~``fraction`` of the frames as validation, whole source configurations at a time
    (``config_id`` in the frame info, or the SPICE molecule) so near-duplicates never straddle."""
    groups: dict[Any, list[int]] = {}
    for k in range(len(frames)):
        groups.setdefault(_group_key(frames, k), []).append(k)
    keys = list(groups)
    rng = np.random.default_rng([seed, 7919])
    rng.shuffle(keys)
    target = max(1, int(round(fraction * len(frames)))) if fraction > 0 else 0
    val: list[int] = []
    for key in keys:
        if len(val) >= target:
            break
        val.extend(groups[key])
    vset = set(val)
    train = [k for k in range(len(frames)) if k not in vset]
    if not train:
        raise DataError("validation split left no training frames; give data.val or lower data.val_fraction")
    return train, sorted(val)


class _Subset(torch.utils.data.Dataset):
    def __init__(self, base: GraphDataset, indices: Sequence[int]) -> None:
        self.base, self.indices = base, list(indices)
        self.type_names = base.type_names

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        return self.base[self.indices[k]]


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"optim.device = {name!r} but no CUDA device is available; use 'cpu' or 'auto'")
    return torch.device(name)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class Trainer:
    """One training run (see the module docstring). Use :func:`train` for the whole thing."""

    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True) -> None:
        from ..runtime import keep_freed_memory

        keep_freed_memory()  # every step allocates similar large arrays: reuse them (see runtime)
        self.cfg = cfg
        self.progress = progress
        self.run_dir = Path(cfg.run_dir)
        o = cfg.optim
        ckpt_path = self.run_dir / CHECKPOINT
        if not resume and ckpt_path.exists():
            raise ConfigError(f"{self.run_dir} already holds a training run ({CHECKPOINT}); resume it with "
                              f"`allegro-bio train --resume {self.run_dir}` or choose another run_dir")
        if resume and not ckpt_path.exists():
            raise ConfigError(f"nothing to resume: {ckpt_path} does not exist")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if o.threads:
            torch.set_num_threads(o.threads)
        torch.manual_seed(o.seed)
        np.random.seed(o.seed % 2**32)
        random.seed(o.seed)
        self.device = _device(o.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = bool(o.tf32)
            torch.backends.cudnn.allow_tf32 = bool(o.tf32)
        if not resume:
            import yaml

            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

        self._load_data()
        self._build_model()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        self.sam = SAM(params, self.optimizer, o.sam_rho) if o.sam_rho > 0 else None
        if o.scheduler == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=o.lr_factor, patience=o.lr_patience, min_lr=o.min_lr * 0.999)
        elif o.scheduler == "multistep":
            self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(o.milestones), gamma=o.lr_factor)
        else:
            self.scheduler = None
        self.ema = EMA(self.model, o.ema_decay) if o.ema_decay > 0 else None
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_val, self.best_state, self.bad_epochs = math.inf, None, 0
        self.history: list[dict[str, Any]] = []
        self.running = [0.0, 0]  # sum of training losses and steps in the current epoch
        self.stopped_because = ""
        if resume:
            self._restore(torch.load(ckpt_path, map_location="cpu", weights_only=False))

    # ---- set-up --------------------------------------------------------------------------

    def _load_data(self) -> None:
        cfg, d = self.cfg, self.cfg.data
        require = _require(cfg)
        self.frames = _read_all(d.train, cfg, require, d.max_frames)
        pre = preset_config(cfg.model_preset, cfg.type_names, **cfg.model_fields())
        self.pre_config = pre
        cut = np.array(pre.cutoff_matrix())
        full = GraphDataset(self.frames, pre.type_names, cut, pre.r_max, lazy=d.lazy, progress=self.progress)
        if d.val:
            self.train_set = full
            val_frames = _read_all(d.val, cfg, require)
            self.val_set = GraphDataset(val_frames, pre.type_names, cut, pre.r_max, lazy=d.lazy, progress=self.progress)
            self.val_source = f"{list(d.val)}"
        else:
            tr, va = split_validation(self.frames, d.val_fraction, cfg.optim.seed)
            self.train_set, self.val_set = _Subset(full, tr), (_Subset(full, va) if va else None)
            self.val_source = f"{len(va)} frames held out of data.train (by source configuration)"
        self.test_set = None
        if d.test:
            test_frames = _read_all(d.test, cfg, ())
            self.test_set = GraphDataset(test_frames, pre.type_names, cut, pre.r_max, lazy=d.lazy, progress=self.progress)
        n = len(self.train_set)
        rng = np.random.default_rng([cfg.optim.seed, 17])
        idx = np.sort(rng.choice(n, size=min(n, d.stats_max_frames), replace=False)).tolist()
        self.stats = compute_stats(self.train_set, idx, d.isolated_atom_energies)
        log.info("training statistics: %s", self.stats)

    def _build_model(self) -> None:
        cfg, s = self.cfg, self.stats
        fields = cfg.model_fields()
        fields.setdefault("avg_num_neighbors", max(s.avg_num_neighbors, 1e-3))
        fields.setdefault("per_type_shift", s.per_type_shift)
        fields.setdefault("per_type_scale", (s.force_rms,) * len(cfg.type_names))
        self.model_config = preset_config(cfg.model_preset, cfg.type_names, **fields)
        self.model: AllegroPotential = build_from_config(self.model_config, seed=cfg.optim.seed).to(self.device).train()
        if "per_type_scale" not in cfg.model_fields():
            self._calibrate_scale()
        o = cfg.optim
        self.force_scale = {"rms": s.force_rms, "max": s.force_max_abs, "none": 1.0}[o.force_normalization] or 1.0

    def _calibrate_scale(self, max_frames: int = 64) -> None:
        """Set σ so that the untrained network's force RMS equals the data's (its raw forces are
        O(10–100) eV/Å at σ = 1, far from any data). ZBL forces are left out of the measurement."""
        net = self.model.net
        zbl, net.use_zbl = net.use_zbl, False
        try:
            n = min(len(self.train_set), max_frames)
            batch = collate([self.train_set[k] for k in range(n)]).to(self.device)
            f = predict(self.model, batch, create_graph=False).forces.detach()
            rms = float(f.pow(2).mean().sqrt())
        finally:
            net.use_zbl = zbl
        if rms > 0 and math.isfinite(rms):
            with torch.no_grad():
                net.per_type_scale.mul_(self.stats.force_rms / rms)
            scale = tuple(float(x) for x in net.per_type_scale.detach().cpu())
            self.model_config = dataclasses.replace(self.model_config, per_type_scale=scale)
            log.info("initial per-type scale %.4g eV (untrained force RMS %.3g eV/Å -> data %.3g eV/Å)",
                     scale[0], rms * scale[0] / self.stats.force_rms, self.stats.force_rms)

    # ---- checkpoints ---------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "best_val": self.best_val, "best_state": self.best_state, "bad_epochs": self.bad_epochs,
            "history": self.history, "running": self.running,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "model_config": self.model_config.to_dict(), "stats": self.stats.to_dict(),
        }

    def save_checkpoint(self) -> None:
        _atomic_torch_save(self._state(), self.run_dir / CHECKPOINT)

    def _restore(self, state: dict[str, Any]) -> None:
        if state["model_config"] != self.model_config.to_dict():
            raise ConfigError(f"{self.run_dir / CHECKPOINT} was written for another model configuration or data; "
                              "resume with the run's own config.yaml and data")
        self.model.load_state_dict(state["model"])
        if self.ema and state["ema"]:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step_in_epoch, self.global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        self.best_val, self.best_state, self.bad_epochs = state["best_val"], state["best_state"], state["bad_epochs"]
        self.history = state["history"]
        self.running = list(state["running"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        log.info("resumed at epoch %d, step %d of the epoch (global step %d)", self.epoch, self.step_in_epoch, self.global_step)

    # ---- steps ---------------------------------------------------------------------------

    def _loss(self, model: AllegroPotential, batch, create_graph: bool):
        o = self.cfg.optim
        want_stress = o.loss == "energy_forces_stress"
        pred = predict(model, batch, create_graph=create_graph, stress=want_stress)
        terms = loss_terms(pred, batch, o.loss, self.force_scale, o.energy_weight, o.force_weight, o.stress_weight)
        return sum(terms.values()), pred

    def train_step(self, batch) -> float:
        o = self.cfg.optim
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self._loss(self.model, batch, True)
        loss.backward()
        if self.sam is not None:
            self.sam.first_step()
            self.optimizer.zero_grad(set_to_none=True)
            loss_adv, _ = self._loss(self.model, batch, True)
            loss_adv.backward()
            if o.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.grad_clip)
            self.sam.second_step()
        else:
            if o.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.grad_clip)
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"training loss became {float(loss)} at step {self.global_step}; lower optim.lr "
                                     "or set optim.grad_clip; the last checkpoint is intact")
        return float(loss.detach())

    @property
    def eval_model(self) -> AllegroPotential:
        return self.ema.model if self.ema is not None else self.model

    def validate(self) -> tuple[float, dict[str, float]]:
        """Validation loss and metrics of the EMA (or raw) model."""
        model = self.eval_model.eval()
        total, frames = 0.0, 0
        from .loss import Metrics

        metrics = Metrics(self.cfg.type_names)
        bs = self.cfg.optim.batch_size
        for k in range(0, len(self.val_set), bs):
            batch = collate([self.val_set[m] for m in range(k, min(k + bs, len(self.val_set)))]).to(self.device)
            loss, pred = self._loss(model, batch, False)
            total += float(loss.detach()) * batch.num_frames
            frames += batch.num_frames
            metrics.update(pred, batch)
        return total / max(frames, 1), metrics.result()

    def _batches(self, epoch: int) -> list[list[int]]:
        n, bs = len(self.train_set), self.cfg.optim.batch_size
        perm = np.random.default_rng([self.cfg.optim.seed, epoch]).permutation(n).tolist()
        return [perm[k:k + bs] for k in range(0, n, bs)]

    # ---- loop ----------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        cfg, o = self.cfg, self.cfg.optim
        from tqdm.auto import tqdm

        while self.epoch < o.epochs and not self.stopped_because:
            t0 = time.perf_counter()
            batches = self._batches(self.epoch)
            todo = batches[self.step_in_epoch:]
            loader = torch.utils.data.DataLoader(self.train_set, batch_sampler=todo, collate_fn=collate,
                                                 num_workers=cfg.data.num_workers)
            bar = tqdm(loader, total=len(batches), initial=self.step_in_epoch, desc=f"epoch {self.epoch + 1}/{o.epochs}",
                       unit="batch", disable=not self.progress, leave=False)
            if self.step_in_epoch == 0:
                self.running = [0.0, 0]
            for batch in bar:
                loss = self.train_step(batch.to(self.device))
                self.running[0] += loss
                self.running[1] += 1
                self.step_in_epoch += 1
                self.global_step += 1
                bar.set_postfix(loss=f"{self.running[0] / self.running[1]:.4g}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
                if self.global_step % o.checkpoint_every == 0 and self.step_in_epoch < len(batches):
                    self.save_checkpoint()
            bar.close()
            self._end_epoch(self.running[0] / max(self.running[1], 1), time.perf_counter() - t0)
        return self._finish()

    def _end_epoch(self, train_loss: float, seconds: float) -> None:
        o = self.cfg.optim
        if self.val_set is not None and len(self.val_set):
            val_loss, m = self.validate()
        else:
            val_loss, m = train_loss, {}
        lr = self.optimizer.param_groups[0]["lr"]
        row = {"epoch": self.epoch + 1, "step": self.global_step, "lr": lr, "train_loss": train_loss, "val_loss": val_loss,
               "val_energy_mae": m.get("energy_mae", math.nan), "val_energy_rmse": m.get("energy_rmse", math.nan),
               "val_forces_mae": m.get("forces_mae", math.nan), "val_forces_rmse": m.get("forces_rmse", math.nan),
               "seconds": seconds}
        self.history.append(row)
        log.info("epoch %4d  train %.4g  val %.4g  F MAE %.4f eV/Å  E MAE %.2f meV/atom  lr %.2e  %.1f s",
                 row["epoch"], train_loss, val_loss, row["val_forces_mae"], row["val_energy_mae"] * 1e3, lr, seconds)
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        elif self.scheduler is not None:
            self.scheduler.step()
        if val_loss < self.best_val:
            self.best_val, self.bad_epochs = val_loss, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.eval_model.state_dict().items()}
        else:
            self.bad_epochs += 1
        self.epoch += 1
        self.step_in_epoch = 0
        if o.early_stopping_patience is not None and self.bad_epochs >= o.early_stopping_patience:
            self.stopped_because = f"early stopping: no validation improvement for {self.bad_epochs} epochs"
        elif self.optimizer.param_groups[0]["lr"] < o.min_lr:
            self.stopped_because = f"learning rate below min_lr {o.min_lr:g}"
        self._write_log()
        self.save_checkpoint()

    def _write_log(self) -> None:
        with open(self.run_dir / "log.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            w.writeheader()
            for row in self.history:
                w.writerow(row)
        learning_curve(self.history, self.run_dir / "learning_curve.png")

    def _finish(self) -> TrainResult:
        cfg = self.cfg
        if not self.stopped_because:
            self.stopped_because = f"reached {cfg.optim.epochs} epochs"
        best = build_from_config(self.model_config, seed=cfg.optim.seed)
        best.load_state_dict(self.best_state if self.best_state is not None else self.eval_model.state_dict())
        best.eval()
        results: dict[str, dict[str, float]] = {}
        for split, ds in (("val", self.val_set), ("test", self.test_set)):
            if ds is not None and len(ds):
                m = evaluate_dataset(best, ds, cfg.optim.batch_size, keep_pairs=True, device="cpu")
                results[split] = m.result()
                parity_plot(m, self.run_dir / f"parity_{split}.png", title=f"{split} ({len(ds)} frames)")
        description = {
            "trained_with": "allegro_bio.train",
            "description": cfg.description,
            "data": {"train": list(cfg.data.train), "val": self.val_source, "test": list(cfg.data.test),
                     "train_frames": len(self.train_set), "max_force_eV_per_A": cfg.data.max_force},
            "loss": cfg.optim.loss, "epochs_run": self.epoch, "stopped_because": self.stopped_because,
            "metrics_eV_A": results, "stats": self.stats.to_dict(),
        }
        path = save(best, self.run_dir / "model.pt", training_description=json.dumps(description),
                    allow_tf32=bool(cfg.optim.tf32))
        (self.run_dir / "summary.json").write_text(json.dumps(description, indent=2))
        log.info("%s; best validation loss %.4g\n%s\ndeployed %s", self.stopped_because, self.best_val,
                 format_table(results, cfg.type_names), path)
        return TrainResult(self.run_dir, path, results, self.stats, self.epoch, self.stopped_because)


def learning_curve(history: list[dict[str, Any]], path: Path) -> None:
    """Training/validation loss and validation force MAE per epoch (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    ep = [r["epoch"] for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.semilogy(ep, [r["train_loss"] for r in history], label="train")
    a1.semilogy(ep, [r["val_loss"] for r in history], label="validation (EMA)")
    a1.set_xlabel("epoch")
    a1.set_ylabel("loss")
    a1.legend()
    a2.semilogy(ep, [r["val_forces_mae"] for r in history])
    a2.set_xlabel("epoch")
    a2.set_ylabel("validation force MAE (eV/Å)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train a model as ``cfg`` says (or resume the run in ``cfg.run_dir``) and deploy the best one."""
    return Trainer(cfg, resume=resume, progress=progress).fit()


def resume(run_dir: str | Path, progress: bool = True, **overrides: Any) -> TrainResult:
    """Continue the run in ``run_dir`` from its last checkpoint (``overrides``: e.g. ``{"optim.epochs": 200}``)."""
    from .config import load_config

    cfg = load_config(Path(run_dir) / "config.yaml", overrides or None)
    cfg = dataclasses.replace(cfg, run_dir=str(run_dir))
    return train(cfg, resume=True, progress=progress)
