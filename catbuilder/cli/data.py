"""Commands that make and cut data: synth, tiles, cutouts, crossmatch."""

from __future__ import annotations

import argparse
from pathlib import Path

from catbuilder.cli.common import (
    check_output,
    command,
    conf,
    csv_list,
    cutout_options,
    cutout_size,
    output_option,
    resolved_output,
    where_options,
)


def _synth_args(p: argparse.ArgumentParser) -> None:
    output_option(p, "output directory of the mock survey", positional=True)
    p.add_argument(
        "--preset",
        action="append",
        dest="presets",
        metavar="NAME",
        help="survey preset: sdss-like or des-like (repeat for both; default both)",
    )
    p.add_argument(
        "--n-objects",
        type=int,
        default=None,
        help=f"objects over all areas {conf('synth.n-objects')}",
    )
    p.add_argument("--seed", type=int, default=None, help=f"random seed {conf('synth.seed')}")
    p.add_argument(
        "--bands", type=csv_list, default=None, help=f"comma-separated {conf('synth.bands')}"
    )
    p.add_argument(
        "--regime",
        choices=["default", "hard"],
        default=None,
        help=f"observing regime (hard: faint, noisy, varying PSF, wrong labels) "
        f"{conf('synth.regime')}",
    )
    p.add_argument(
        "--table-format", choices=["parquet", "fits"], default="parquet", help="source tables"
    )
    p.add_argument("--preview", action="store_true", help="write PNGs of a tile and of objects")
    where_options(p, "a process pool")


@command("synth", "make a GalSim mock survey (FITS tiles, source and label tables)")(_synth_args)
def _synth(args: argparse.Namespace) -> int:
    from catbuilder.synth import make_survey

    outdir = resolved_output(args)
    if outdir is None:
        raise ValueError("synth needs an output directory: catbuilder synth -o DIR")
    survey = make_survey(
        outdir,
        presets=args.presets,
        n_objects=args.n_objects,
        seed=args.seed,
        bands=args.bands,
        regime=args.regime,
        table_format=args.table_format,
        cluster=args.cluster,
        workers=args.workers,
        progress=not args.no_progress,
        preview=args.preview,
    )
    print(survey.summary())
    return 0


def _tiles_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="FITS files, directories or glob patterns")
    p.add_argument("-o", "--output", type=Path, required=True, help="index file (.parquet)")
    p.add_argument(
        "--band-pattern",
        default=None,
        help="regex with a (?P<band>...) group, matched to file names, for files whose headers "
        "name no band (default: header keywords BAND, FILTER, FILTNAM)",
    )
    p.add_argument(
        "--tile-pattern",
        default=None,
        help="regex with a (?P<tile>...) group (default: the file name without suffix and band)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an index catbuilder wrote")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@command("tiles", "index FITS tiles: bands, WCS footprints (Parquet)")(_tiles_args)
def _tiles(args: argparse.Namespace) -> int:
    from catbuilder.sky import TileIndex

    if args.output.suffix.lower() not in (".parquet", ".pq"):
        raise ValueError(f"-o {args.output}: a tile index is written as Parquet; name it .parquet")
    check_output(args.output, "tile index", args.overwrite)
    index = TileIndex.build(
        args.inputs,
        band_pattern=args.band_pattern,
        tile_pattern=args.tile_pattern,
        progress=not args.no_progress,
    )
    index.to_parquet(args.output)
    print(f"{index} -> {args.output}")
    for path, why in index.problems:
        print(f"  not indexed: {path}: {why}")
    return 0


def _cutouts_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", help="source table (FITS, CSV, Parquet)")
    p.add_argument("tiles", nargs="+", help="FITS tiles, directories, globs, or an index .parquet")
    p.add_argument("-o", "--output", type=Path, required=True, help="Zarr store to write")
    cutout_options(p)
    p.add_argument(
        "--reference-band",
        default=None,
        help=f"band whose pixel grid the others follow {conf('cutouts.reference-band')}",
    )
    p.add_argument(
        "--chunk-objects",
        type=int,
        default=None,
        help=f"objects per Zarr chunk and Dask task {conf('cutouts.chunk-objects')}",
    )
    p.add_argument(
        "--ra-col", default=None, help=f"RA column {conf('sources.ra-columns')} (first present)"
    )
    p.add_argument(
        "--dec-col", default=None, help=f"Dec column {conf('sources.dec-columns')} (first present)"
    )
    p.add_argument(
        "--id-col", default=None, help=f"id column {conf('sources.id-columns')} (first present)"
    )
    p.add_argument("--append", action="store_true", help="append to an existing stack")
    p.add_argument("--overwrite", action="store_true", help="replace a stack made differently")
    where_options(p, "a process pool")


@command("cutouts", "cut sources out of FITS tiles into a Zarr image stack")(_cutouts_args)
def _cutouts(args: argparse.Namespace) -> int:
    from catbuilder.stack import append_to_stack, build_stack

    size = cutout_size(args.size)
    tiles = args.tiles[0] if len(args.tiles) == 1 else args.tiles
    common = dict(
        ra_col=args.ra_col,
        dec_col=args.dec_col,
        id_col=args.id_col,
        cluster=args.cluster,
        workers=args.workers,
        progress=not args.no_progress,
    )
    if args.append:
        stack = append_to_stack(args.output, args.table, tiles, **common)
    else:
        stack = build_stack(
            args.table,
            tiles,
            args.output,
            size=size,
            bands=args.bands,
            reference_band=args.reference_band,
            chunk_objects=args.chunk_objects,
            overwrite=args.overwrite,
            **common,
        )
    flags = stack.objects()["flags"]
    print(f"{stack}\n  flagged: {int((flags != 0).sum())} of {len(stack)} objects")
    return 0


def _xmatch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("left", help="table whose rows are matched")
    p.add_argument("right", help="table searched for each left row")
    p.add_argument("-o", "--output", type=Path, required=True, help="matched pairs (.parquet)")
    p.add_argument(
        "--radius",
        default=None,
        help=f'match radius, an angle such as "1 arcsec" (a number: arcsec) '
        f"{conf('crossmatch.radius-arcsec')}",
    )
    p.add_argument("--unmatched", type=Path, default=None, help="write unmatched left rows here")
    p.add_argument("--overwrite", action="store_true", help="replace tables catbuilder wrote")
    where_options(p, "a process pool, for tables large enough to partition")


@command("crossmatch", "match two source tables on the sky")(_xmatch_args)
def _crossmatch(args: argparse.Namespace) -> int:
    from catbuilder.sky import crossmatch

    for out in (args.output, args.unmatched):
        if out is not None:
            check_output(out, "crossmatch", args.overwrite)  # before the work, not after

    res = crossmatch(
        args.left,
        args.right,
        args.radius,
        cluster=args.cluster,
        workers=args.workers,
        progress=not args.no_progress,
    )
    from catbuilder.outputs import write_parquet

    write_parquet(res.join(), args.output, "crossmatch")
    if args.unmatched is not None:
        write_parquet(res.unmatched_left, args.unmatched, "crossmatch")
    print(res.summary())
    return 0
