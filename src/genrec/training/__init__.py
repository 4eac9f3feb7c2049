"""Training: one generic trainer (``trainer.fit``) and the next-item losses (``losses``)."""

from genrec.training.trainer import TrainConfig, TrainResult, fit

__all__ = ["TrainConfig", "TrainResult", "fit"]
