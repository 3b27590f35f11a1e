"""What a self-training run did: rounds per strategy and seed, pseudo-labels,
confidence curves, and the comparison of strategies against the control."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["SelfTrainResult"]


@dataclass
class SelfTrainResult:
    """What each round of each seed and strategy did.

    Attributes
    ----------
    rounds
        One row per strategy, seed and round: ``strategy, seed, round`` (0:
        trained on A only, shared by the strategies), ``n_train``,
        ``n_added`` and ``added_<class>``, ``accuracy`` and ``n_eval`` on B's
        evaluation objects, ``top_half_accuracy``, ``model`` (the saved
        model's directory), ``stopped`` (on a seed's last round before
        ``rounds``: why no further round was trained).
    added
        The pseudo-labelled objects of B: ``strategy, seed, round, objid,
        pseudo_label, confidence`` (and ``label``, the truth where B has one).
    curves
        Accuracy against the fraction of most confident evaluation objects
        kept: ``strategy, seed, round, fraction, accuracy``.
    outdir
        Where models and tables are.
    classes
        The model's classes.
    """

    rounds: pd.DataFrame
    added: pd.DataFrame
    curves: pd.DataFrame
    outdir: Path | None = None
    classes: list[str] = field(default_factory=list)

    @property
    def strategies(self) -> list[str]:
        """The strategies the run compared, in the order given."""
        return list(dict.fromkeys(self.rounds.get("strategy", pd.Series(["top"]))))

    def _of(self, strategy: str | None) -> pd.DataFrame:
        r = self.rounds
        if "strategy" not in r:
            return r
        return r[r["strategy"] == (strategy or self.strategies[0])]

    def summary(self, strategy: str | None = None) -> pd.DataFrame:
        """Accuracy per round over seeds: ``mean, std, min, max, seeds``
        (of ``strategy``, default the first)."""
        r = self._of(strategy)
        g = r.groupby("round")["accuracy"]
        out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "min": g.min(), "max": g.max()})
        out["seeds"] = g.count()
        out["n_added_mean"] = r.groupby("round")["n_added"].mean()
        return out.reset_index()

    def gain(self, round: int | None = None, strategy: str | None = None) -> tuple[float, float]:
        """Mean accuracy gain of a round (default: each seed's last) over round 0, and the
        spread of that gain over seeds (standard deviation of the per-seed differences)."""
        r = self._of(strategy)
        if round is None:
            pick = r.groupby("seed")["round"].transform("max") == r["round"]
        else:
            pick = r["round"] == round
        first = r[r["round"] == 0].set_index("seed")["accuracy"]
        later = r[pick].set_index("seed")["accuracy"]
        diff = (later - first).dropna()
        return float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else float("nan")

    def against(self, baseline: str = "control") -> pd.DataFrame:
        """Every strategy per round against ``baseline``, seed by seed.

        Returns
        -------
        pandas.DataFrame
            ``strategy, round, accuracy`` (mean over seeds), ``std``,
            ``seeds``, ``gain`` (mean of the per-seed differences from the
            baseline's same round) and ``gain_std`` (their spread).
        """
        if baseline not in self.strategies:
            raise ValueError(
                f"no {baseline!r} strategy in this run; it compared {', '.join(self.strategies)}"
            )
        r = self.rounds
        base = r[r["strategy"] == baseline].set_index(["seed", "round"])["accuracy"]
        rows = []
        for (s, rnd), g in r.groupby(["strategy", "round"], sort=False):
            diff = (g.set_index(["seed", "round"])["accuracy"] - base).dropna()
            rows.append(
                {
                    "strategy": s,
                    "round": int(rnd),
                    "accuracy": g["accuracy"].mean(),
                    "std": g["accuracy"].std(ddof=1),
                    "seeds": int(g["accuracy"].count()),
                    "gain": diff.mean() if len(diff) else np.nan,
                    "gain_std": diff.std(ddof=1) if len(diff) > 1 else np.nan,
                }
            )
        return pd.DataFrame(rows)

    def __str__(self) -> str:
        lines = []
        for strategy in self.strategies:
            if len(self.strategies) > 1:
                lines.append(f"strategy {strategy}:")
            lines.append("round  accuracy on B (mean +- std over seeds)  added per seed")
            for _, r in self.summary(strategy).iterrows():
                lines.append(
                    f"{int(r['round']):>5}  {r['mean']:.4f} +- {r['std']:.4f} "
                    f"[{r['min']:.4f}, {r['max']:.4f}] ({int(r['seeds'])} seeds)"
                    f"  {r['n_added_mean']:.0f}"
                )
            rows = self._of(strategy)
            why = rows.get("stopped", pd.Series(dtype=str)).fillna("").astype(str)
            for i in why[why != ""].index:
                r = rows.loc[i]
                lines.append(f"seed {r['seed']} stopped after round {r['round']}: {r['stopped']}")
            for k in sorted(set(rows["round"]) - {0}):
                gain, spread = self.gain(k, strategy)
                lines.append(
                    f"gain of round {k} over round 0: {gain:+.4f} (std over seeds {spread:.4f})"
                )
        if "control" in self.strategies and len(self.strategies) > 1:
            lines.append("against the control (A alone, trained as long), per seed:")
            t = self.against("control")
            for _, r in t[(t["strategy"] != "control") & (t["round"] > 0)].iterrows():
                lines.append(
                    f"  {r['strategy']:<11} round {int(r['round'])}: {r['gain']:+.4f} "
                    f"(std over seeds {r['gain_std']:.4f})"
                )
        return "\n".join(lines)
