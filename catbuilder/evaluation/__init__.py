"""Evaluation: metrics, ROC, confidence curves, plots, embedding clusters."""

from catbuilder.evaluation.metrics import Evaluation, confidence_curve, evaluate, per_class_metrics

__all__ = ["Evaluation", "confidence_curve", "evaluate", "per_class_metrics"]
