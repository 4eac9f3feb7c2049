"""Training: one generic trainer (``trainer.fit``); the losses are in ``genrec.models._losses``."""

from genrec.training.trainer import TrainConfig, TrainResult, fit

__all__ = ["TrainConfig", "TrainResult", "fit"]
