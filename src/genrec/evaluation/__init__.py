"""Evaluation: full-ranking evaluator (``evaluate``), its slow reference and the metric functions."""

from genrec.evaluation.evaluator import EvalResult, evaluate, reference_evaluate, slice_metrics

__all__ = ["EvalResult", "evaluate", "reference_evaluate", "slice_metrics"]
