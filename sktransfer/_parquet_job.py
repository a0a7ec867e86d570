"""Embedding a list of image files into a partitioned parquet dataset on a Dask cluster.

The images are cut into fixed partitions of ``partition_size`` paths, in order. Each
partition is embedded by one task (see :mod:`sktransfer._dask`) and written by the
client, as it finishes, to ``OUT/part-NNNNN.parquet`` (atomically: a part file is
complete or absent). ``OUT/_sktransfer_job.json`` records what the job is (network,
options, the list of paths); a second run of the same job skips the parts already
written, so a stopped job resumes where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from ._cache import fingerprint
from ._dask import partition_tasks
from .io import atomic_write

MANIFEST = "_sktransfer_job.json"


def part_path(out: Path, index: int) -> Path:
    """Where partition ``index`` is written."""
    return out / f"part-{index:05d}.parquet"


def _job(extractor, paths: list[str], partition_size: int) -> dict:
    return {"format": 1, "network": extractor._fingerprint(),
            "precision": extractor.precision, "partition_size": partition_size,
            "n_images": len(paths), "paths": fingerprint(paths)}


def _claim(out: Path, job: dict) -> None:
    """Start the job in ``out``, or check that ``out`` holds this same job."""
    manifest = out / MANIFEST
    if manifest.exists():
        previous = json.loads(manifest.read_text())
        if previous != job:
            changed = sorted(key for key in job if previous.get(key) != job[key])
            raise ValueError(
                f"{out} holds an extraction with other settings ({', '.join(changed)} "
                "differ); delete it or choose another --out")
        return
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not an sktransfer extraction; choose another "
                         "--out")
    atomic_write(manifest, lambda tmp: tmp.write_text(json.dumps(job, indent=1)))


def extract_to_parquet(extractor, paths: list[str], labels: list[str], out: Path,
                       client, *, partition_size: int = 512,
                       progress: bool = True) -> tuple[int, int]:
    """Embed ``paths`` on ``client``'s cluster into the parquet dataset ``out``.

    Parameters
    ----------
    extractor : PretrainedFeatureExtractor
        Fitted on the client; shipped to each worker once.
    paths, labels : list of str
        One label per path (``""`` for none); both become columns.
    out : Path
        The dataset's folder.
    client : distributed.Client
        Where the partitions run.
    partition_size : int, default=512
        Images per task and per part file.
    progress : bool, default=True
        Show a progress bar over the images.

    Returns
    -------
    computed, found : int
        Partitions embedded by this call, and partitions a previous run had written.
    """
    import pandas as pd
    from distributed import as_completed

    _claim(out, _job(extractor, paths, partition_size))
    starts = range(0, len(paths), partition_size)
    todo = [k for k in range(len(starts)) if not part_path(out, k).exists()]
    columns = list(extractor.get_feature_names_out())
    blocks = [paths[starts[k]:starts[k] + partition_size] for k in todo]
    futures = client.compute(partition_tasks(extractor, blocks, "transform", todo))
    index_of = {future.key: k for future, k in zip(futures, todo, strict=True)}
    done = len(paths) - sum(len(block) for block in blocks)
    with tqdm(total=len(paths), initial=done, unit="img", disable=not progress,
              desc="Extracting on Dask") as bar:
        for future in as_completed(futures):
            k = index_of[future.key]
            rows = slice(starts[k], starts[k] + partition_size)
            frame = pd.DataFrame(future.result(), columns=columns)
            frame.insert(0, "label", labels[rows])
            frame.insert(0, "path", paths[rows])
            atomic_write(part_path(out, k), lambda tmp, f=frame: f.to_parquet(tmp, index=False))
            future.release()
            bar.update(len(frame))
    return len(todo), len(starts) - len(todo)
