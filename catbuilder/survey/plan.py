"""A survey run planned, not run: tasks, bytes per task, projected time and nodes.

``run_survey(..., dry_run=True)`` partitions the sources (the same pass a
run makes, kept for it) and returns a :class:`SurveyPlan` made from the
partition list and the tile index alone: no pixel is read. Each partition is
matched to the tile images it meets by sampling each tile's square on a
grid; bytes are estimated from the cutout size, the model's output
width and the images' sizes; time from per-core rates measured on these
machines (docs/scale.md), which a user replaces with their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: core-milliseconds per object, measured end to end at 32 px with the small
#: CNN on a 2-core test machine (docs/scale.md, "10^8 objects: a projection")
MEASURED_RATES = {"cutouts": 0.235, "predict": 0.442, "catalog": 0.028}


@dataclass
class SurveyPlan:
    """What a survey run would do, from its partitions and tile index.

    Attributes
    ----------
    tasks
        One row per partition (a Dask task): ``order``, ``pixel``, ``n``
        (objects), ``images`` (tile images it may read), ``read_bytes``
        (an estimate: the image rows its share of each tile spans, float32
        uncompressed), ``stack_bytes``
        (cutouts, float32, before compression), ``prediction_bytes``.
    n_tiles, n_images, image_bytes
        Tiles, images (tile x band) and their bytes (float32, uncompressed)
        in the index.
    rates
        Core-milliseconds per object by stage, for :meth:`projection`.
    """

    tasks: pd.DataFrame
    n_tiles: int
    n_images: int
    image_bytes: float
    rates: dict[str, float] = field(default_factory=lambda: dict(MEASURED_RATES))

    @property
    def n_objects(self) -> int:
        """Objects in the survey."""
        return int(self.tasks["n"].sum())

    def projection(self, cores_per_node: int = 32, efficiency: float = 0.9) -> dict:
        """Core-hours, and the nodes for a run of 1, 6 and 24 hours.

        ``efficiency`` is the fraction of a node's cores that does work
        (measured: two workers gave 1.89x one, 0.95 per core, on 2 cores).
        """
        core_hours = self.n_objects * sum(self.rates.values()) / 1000 / 3600
        per_node = cores_per_node * efficiency
        return {
            "core_hours": core_hours,
            "node_hours": core_hours / per_node,
            **{f"nodes_for_{h}h": int(np.ceil(core_hours / per_node / h)) for h in (1, 6, 24)},
        }

    def summary(self, cores_per_node: int = 32, efficiency: float = 0.9) -> str:
        """The plan as text: tasks, bytes per task, totals, projected time and nodes."""
        t = self.tasks
        p = self.projection(cores_per_node, efficiency)

        def q(col: str) -> str:
            v = t[col].to_numpy(dtype=float)
            return "  ".join(f"{np.percentile(v, k):>10,.0f}" for k in (0, 50, 100))

        mib = t[["read_bytes", "stack_bytes", "prediction_bytes"]] / 2**20
        t = t.assign(read_mib=mib["read_bytes"], stack_mib=mib["stack_bytes"],
                     pred_mib=mib["prediction_bytes"])  # fmt: skip
        lines = [
            f"{self.n_objects:,} objects in {len(t):,} partitions (tasks), "
            f"orders {t['order'].min()}-{t['order'].max()}; "
            f"{self.n_tiles:,} tiles, {self.n_images:,} images",
            f"{'per task':<22}{'min':>10}  {'median':>10}  {'max':>10}",
            f"{'objects':<22}{q('n')}",
            f"{'images touched':<22}{q('images')}",
            f"{'MiB read (estimate)':<22}{q('read_mib')}",
            f"{'MiB cutouts written':<22}{q('stack_mib')}",
            f"{'MiB predictions':<22}{q('pred_mib')}",
            f"totals: read {t['read_bytes'].sum() / 2**40:.2f} TiB "
            f"({t['read_bytes'].sum() / self.image_bytes:.2f}x the images), cutouts "
            f"{t['stack_bytes'].sum() / 2**40:.2f} TiB (before compression), predictions "
            f"{t['prediction_bytes'].sum() / 2**40:.2f} TiB",
            "rates (core-ms per object): " + ", ".join(f"{k} {v:g}" for k, v in self.rates.items()),
            f"projected: {p['core_hours']:,.0f} core-hours; nodes of {cores_per_node} cores "
            f"at {efficiency:.0%}: {p['nodes_for_24h']} for 24 h, {p['nodes_for_6h']} for 6 h, "
            f"{p['nodes_for_1h']} for 1 h",
        ]
        return "\n".join(lines)


#: sample points per tile side when matching tiles to partitions
GRID = 16


def _tile_shares(tiles: pd.DataFrame, parts: pd.DataFrame) -> pd.DataFrame:
    """For each (tile, partition) that meet: the share of the tile's rows the
    partition's objects can span. Sampled on a GRID x GRID grid per tile (its
    square on the sky, rows along RA); ``tiles`` has one row per tile."""
    from catbuilder.survey.partition import healpix, partition_key

    u = (np.arange(GRID) + 0.5) / GRID - 0.5  # -0.5 .. 0.5 of a side
    side = tiles["radius"].to_numpy() * np.sqrt(2)  # from centre-to-corner
    dec = tiles["dec"].to_numpy()[:, None, None] + (side[:, None, None] * u[:, None])
    cosd = np.cos(np.radians(np.clip(dec, -89.9, 89.9)))
    ra = tiles["ra"].to_numpy()[:, None, None] + side[:, None, None] * u[None, :] / cosd
    ra, dec = (ra % 360.0).ravel(), np.broadcast_to(dec, ra.shape).ravel()
    del cosd
    row = np.broadcast_to(np.arange(GRID, dtype=np.int16)[None, :, None],
                          (len(tiles), GRID, GRID)).ravel()  # fmt: skip
    tile = np.repeat(np.arange(len(tiles), dtype=np.int32), GRID * GRID)
    part = np.full(len(ra), -1, dtype=np.int32)
    keys = partition_key(parts["order"].to_numpy(), parts["pixel"].to_numpy())
    by_key = np.argsort(keys)
    for order in np.unique(parts["order"]):
        k = partition_key(order, healpix(int(order), ra, dec))
        at = np.clip(np.searchsorted(keys[by_key], k), 0, len(keys) - 1)
        found = keys[by_key][at] == k
        part[found] = by_key[at[found]]
    del ra, dec
    ok = part >= 0
    spans = (
        pd.DataFrame({"tile": tile[ok], "part": part[ok], "row": row[ok]})
        .groupby(["tile", "part"])["row"]
        .agg(["min", "max"])
        .reset_index()
    )
    spans["share"] = (spans["max"] - spans["min"] + 1) / GRID
    return spans[["tile", "part", "share"]]


def plan_partitions(parts: pd.DataFrame, index, stack: dict, outputs_per_object: int,
                    rates: dict | None = None) -> SurveyPlan:  # fmt: skip
    """The plan of a run over ``parts`` (from ``partition_sources``) and a tile index.

    ``stack`` holds the cutouts' ``size`` and ``bands``; ``outputs_per_object``
    the float32 values predict stores per object (classes, raw probabilities,
    embedding).
    """
    t = index.table
    t = t.loc[t["band"].isin(stack["bands"]), ["tile", "nx", "ny", "ra", "dec", "radius"]]
    t = t.assign(bytes=t["nx"].astype(float) * t["ny"].astype(float) * 4)
    # the bands of a tile share its footprint: sampled once, their bytes summed
    tiles = t.groupby("tile", sort=False).agg(
        ra=("ra", "first"), dec=("dec", "first"), radius=("radius", "first"),
        images=("bytes", "size"), bytes=("bytes", "sum"),
    )  # fmt: skip
    spans = _tile_shares(tiles, parts)
    at = spans["tile"].to_numpy()
    spans["images"] = tiles["images"].to_numpy()[at]
    spans["bytes"] = tiles["bytes"].to_numpy()[at] * spans["share"]
    per = spans.groupby("part").agg(images=("images", "sum"), read=("bytes", "sum"))
    per = per.reindex(range(len(parts)), fill_value=0)
    n = parts["n"].to_numpy(dtype=np.int64)
    tasks = pd.DataFrame({
        "order": parts["order"].to_numpy(), "pixel": parts["pixel"].to_numpy(), "n": n,
        "images": per["images"].to_numpy(dtype=np.int64),
        "read_bytes": per["read"].to_numpy(dtype=float),
        "stack_bytes": n * len(stack["bands"]) * stack["size"] ** 2 * 4,
        "prediction_bytes": n * outputs_per_object * 4,
    })  # fmt: skip
    return SurveyPlan(tasks, len(tiles), len(t), float(t["bytes"].sum()),
                      dict(rates or MEASURED_RATES))  # fmt: skip
