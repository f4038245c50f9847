"""Training: data readers, statistics, loss, EMA, SAM, the trainer with exact resume, evaluation.

Examples
--------
>>> from allegro_bio.train import load_config, train     # doctest: +SKIP
>>> result = train(load_config("configs/tiny-cpu.yaml"))  # doctest: +SKIP
>>> result.metrics["val"]["forces_mae"]                    # eV/Å  # doctest: +SKIP
"""

from .config import DataConfig, OptimConfig, TrainConfig, config_from_dict, load_config
from .data import DataError, GraphDataset, collate, read_frames, read_spice, smiles_charge
from .evaluate import evaluate_dataset, evaluate_files, parity_plot
from .loss import Metrics, loss_terms
from .optim import EMA, SAM
from .predict import predict
from .stats import DatasetStats, compute_stats
from .trainer import Trainer, TrainResult, resume, split_validation, train

__all__ = [
    "DataConfig", "DataError", "DatasetStats", "EMA", "GraphDataset", "Metrics", "OptimConfig", "SAM", "TrainConfig",
    "TrainResult", "Trainer", "collate", "compute_stats", "config_from_dict", "evaluate_dataset", "evaluate_files",
    "load_config", "loss_terms", "parity_plot", "predict", "read_frames", "read_spice", "resume", "smiles_charge",
    "split_validation", "train",
]
