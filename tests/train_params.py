"""Training parameters shared by the training tests (imported, not collected)."""


def small_cnn_params(epochs: int) -> dict:
    """The small CNN at 32 px, one stage of ``epochs``, no early stop."""
    return {
        "batch_size": 16,
        "input_size": 32,
        "early_stopping_patience": 100,
        "stages": "whole-network",
        "epochs": epochs,
    }
