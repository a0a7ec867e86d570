"""The ``extract`` command: embeddings of a folder of images, locally or on Dask."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from . import _cli_common as common


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``extract`` command's options."""
    p.add_argument("folder", help="folder of images, flat or one subfolder per class")
    p.add_argument("-o", "--out", required=True, help="output: .npy, .csv or .parquet")
    p.add_argument("--layer", action="append", default=None,
                   help="intermediate layer to pool (repeat for several)")
    p.add_argument("--dask", default=None, metavar="SPEC",
                   help="run on Dask: local:N (a local cluster of N worker processes) or a "
                        "scheduler address (tcp://host:8786); writes -o NAME.parquet as a "
                        "partitioned dataset and resumes a stopped run (needs "
                        "sktransfer[dask])")
    p.add_argument("--partition-size", type=int, default=512,
                   help="with --dask: images per task and per part file (default: 512)")
    common.add_backbone_options(p)


def extract(args) -> int:
    """Embed FOLDER's images and write them to ``-o``."""
    from ._extractor import PretrainedFeatureExtractor
    from .folders import list_images, load_image_folder

    try:
        paths, labels, skipped = load_image_folder(args.folder)
    except ValueError:
        paths, skipped = list_images([args.folder])
        labels = [""] * len(paths)
    common.warn_skipped(skipped)
    out = Path(args.out)
    if out.suffix not in (".npy", ".csv", ".parquet"):
        raise common.CliError(f"--out {out}: use a .npy, .csv or .parquet file name")
    if args.dask is not None and out.suffix != ".parquet":
        raise common.CliError(f"--out {out}: --dask writes a partitioned parquet dataset; "
                              "use a .parquet name")
    if args.partition_size < 1:
        raise common.CliError(f"--partition-size {args.partition_size}: must be at least 1")
    extractor = PretrainedFeatureExtractor(
        **common.backbone_params(args), layer=args.layer, verbose=not args.quiet,
        random_state=getattr(args, "seed", 0)
    ).fit()
    if args.dask is not None:
        return _extract_on_dask(args, extractor, [str(p) for p in paths], labels, out)
    embeddings = extractor.transform([str(p) for p in paths])
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, embeddings)
        index = out.with_name(out.stem + "_index.csv")
        common.write_csv(index, ["path", "label"], zip(map(str, paths), labels, strict=True))
        print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {out} "
              f"(rows in the order of {index})")
    else:
        import pandas as pd

        frame = pd.DataFrame(embeddings, columns=extractor.get_feature_names_out())
        frame.insert(0, "label", labels)
        frame.insert(0, "path", [str(p) for p in paths])
        frame.to_csv(out, index=False) if out.suffix == ".csv" else frame.to_parquet(out)
        print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {out}")
    return common.EXIT_OK


def _extract_on_dask(args, extractor, paths: list[str], labels: list[str], out: Path) -> int:
    try:
        from ._parquet_job import extract_to_parquet
        from .dask import connect
    except ImportError as exc:
        raise common.CliError(f"--dask needs Dask: pip install 'sktransfer[dask]' ({exc})"
                              ) from None
    try:
        client = connect(args.dask)
    except OSError as exc:
        raise common.CliError(str(exc)) from None
    with client:
        computed, found = extract_to_parquet(
            extractor, paths, labels, out, client, partition_size=args.partition_size,
            progress=not args.quiet)
    resumed = f"; {found} were already written" if found else ""
    print(f"wrote {len(paths)} x {extractor.n_features_out_} embeddings to {out} "
          f"({computed + found} parquet parts{resumed})")
    return common.EXIT_OK
