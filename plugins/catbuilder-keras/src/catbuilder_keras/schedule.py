"""Training stages as data: which layers train, for how long, at what rate."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from catbuilder import config

__all__ = ["SCHEDULES", "Stage", "check_whole_network", "stages_from_config"]

_KEYS = {"name", "epochs", "learning-rate", "learning_rate", "trainable-from", "trainable_from"}


@dataclass(frozen=True)
class Stage:
    """One stage of transfer learning.

    Parameters
    ----------
    name
        Label in the history.
    epochs
        Epochs to train (early stopping may end the stage sooner).
    learning_rate
        Adam learning rate (per worker, before scaling by the number of ranks).
    trainable_from
        ``"head"``: the pretrained base is frozen, only the new head trains;
        ``"top"`` / ``"all"``: the architecture's two freezing points (layers
        40+ and 2+ for Xception, as in the paper); an int: base layers from
        that index on train. Models without a pretrained base train whole.
    """

    name: str
    epochs: int
    learning_rate: float
    trainable_from: str | int | None = "head"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stage:
        unknown = set(d) - _KEYS
        if unknown:
            raise ValueError(
                f"unknown stage key(s) {sorted(unknown)}; a stage has name, epochs, "
                "learning-rate, trainable-from"
            )
        get = lambda k: d.get(k, d.get(k.replace("-", "_")))  # noqa: E731
        tf = get("trainable-from")
        if tf is not None and not isinstance(tf, int) and tf not in ("head", "top", "all"):
            raise ValueError(f"trainable-from must be head, top, all or a layer index, got {tf!r}")
        if get("epochs") is None or get("learning-rate") is None:
            raise ValueError(f"stage {d} needs epochs and learning-rate")
        return cls(
            str(get("name") or "stage"),
            int(get("epochs")),
            float(get("learning-rate")),
            "head" if tf is None else tf,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: schedules by name: ``paper`` is the ``keras.stages`` configuration (the paper's
#: three stages: head, top blocks, all); ``whole-network`` trains every layer
#: from the first epoch (a model trained from scratch: the small CNN's default)
SCHEDULES = ("paper", "whole-network")
_WHOLE_NETWORK = (Stage("all", 15, 1e-3, "all"),)


def stages_from_config(stages: list | str | None = None) -> list[Stage]:
    """Stages from a schedule's name or a list of dicts/Stages, default the
    ``keras.stages`` configuration."""
    if isinstance(stages, str):
        if stages == "whole-network":
            return list(_WHOLE_NETWORK)
        if stages != "paper":
            raise ValueError(
                f"unknown schedule {stages!r}: {', '.join(SCHEDULES)}, or a list of stages"
            )
        stages = None
    raw = config.resolve("keras.stages", stages)
    out = [s if isinstance(s, Stage) else Stage.from_dict(dict(s)) for s in raw]
    if not out:
        raise ValueError("at least one training stage is needed")
    return out


def check_whole_network(architecture: str, all_from: int, stages: list[Stage]) -> None:
    """Refuse to train a head on a frozen random base: a pretrained architecture
    started from random weights must train its whole network (from the paper's
    ``all`` point, layer ``all_from``) in every stage.

    Raises
    ------
    ValueError
        Naming the stages that would freeze the random base, and what to do.
    """
    frozen = [
        st.name
        for st in stages
        if not (
            st.trainable_from == "all"
            or (isinstance(st.trainable_from, int) and st.trainable_from <= all_from)
        )
    ]
    if frozen:
        raise ValueError(
            f"{architecture} with weights=None would train on a frozen random base in "
            f"stage(s) {', '.join(frozen)}: use weights='imagenet' (catbuilder weights add "
            f"keras.{architecture} FILE) or stages='whole-network'"
        )
