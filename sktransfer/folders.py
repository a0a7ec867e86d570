"""Image folders as users lay them out: one subfolder per class, or loose files."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import FolderError

#: The file extensions (lower case) that :func:`list_images` takes as images.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def load_image_folder(root: str | os.PathLike) -> tuple[list[Path], list[str], list[Path]]:
    """List the images of a folder laid out one subfolder per class.

    Parameters
    ----------
    root : path
        ``root/<class name>/<image files>``; subfolders are searched recursively.

    Returns
    -------
    paths : list of Path
        Image files, sorted by class then path.
    labels : list of str
        The class (subfolder name) of each image.
    skipped : list of Path
        Files without an image extension (and hidden files), left out.

    Raises
    ------
    FolderError
        If ``root`` is missing or not a folder, has fewer than two class subfolders, or a
        class subfolder holds no image.
    """
    root = Path(root)
    if not root.exists():
        raise FolderError(f"folder not found: {root}")
    if not root.is_dir():
        raise FolderError(f"not a folder: {root}")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise FolderError(
            f"{root} must hold one subfolder per class (at least 2); found "
            f"{[p.name for p in classes]}"
        )
    paths, labels, skipped = [], [], []
    for class_dir in classes:
        found, ignored = _scan(class_dir)
        if not found:
            raise FolderError(f"class folder {class_dir} holds no image file")
        paths += found
        labels += [class_dir.name] * len(found)
        skipped += ignored
    skipped += [p for p in root.iterdir() if p.is_file()]
    return paths, labels, skipped


def _scan(folder: Path) -> tuple[list[Path], list[Path]]:
    found, ignored = [], []
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            continue
        (found if _is_image_name(path) else ignored).append(path)
    return found, ignored


def list_images(inputs: list[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """Expand files and folders (searched recursively) into image paths.

    Parameters
    ----------
    inputs : list of path
        Image files and folders.

    Returns
    -------
    paths : list of Path
        Files given explicitly (whatever their extension) and images found in folders.
    skipped : list of Path
        Files in the folders without an image extension.

    Raises
    ------
    FolderError
        If an input does not exist, or nothing is left to read.
    """
    paths, skipped = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            found, ignored = _scan(item)
            paths += found
            skipped += ignored
        elif item.exists():
            paths.append(item)
        else:
            raise FolderError(f"no such file or folder: {item}")
    if not paths:
        raise FolderError(f"no image files in {[str(i) for i in inputs]}")
    return paths, skipped


def load_targets_table(
    folder: str | os.PathLike, table: str | os.PathLike, columns: list[str] | None = None,
    *, labels: bool = False,
) -> tuple[list[Path], object]:
    """Read the images and the targets listed in a CSV file (regression, or labels).

    Parameters
    ----------
    folder : path
        Base folder of relative image paths.
    table : path
        CSV with a header: an image column (``path``, or else the first column) holding
        paths relative to ``folder`` (or absolute), and numeric target columns.
    columns : list of str, default=None
        Target columns to use; default: every column but the image column.
    labels : bool, default=False
        Read the target columns as class labels (text; one task per column) instead of
        numbers; an empty cell is a missing label (None).

    Returns
    -------
    paths : list of Path
        The images, in the file's row order.
    targets : pandas.DataFrame
        One column per target, named as in the file: floats, or with ``labels`` objects
        (str, None where missing).

    Raises
    ------
    FolderError
        For a missing file or folder, a missing column, a non-numeric or empty target,
        or an image that does not exist (named with its row).
    """
    import pandas as pd

    folder, table = Path(folder), Path(table)
    if not folder.is_dir():
        raise FolderError(f"folder not found: {folder}")
    if not table.is_file():
        raise FolderError(f"targets file not found: {table}")
    try:  # labels as text (an empty cell: no label), numbers parsed below
        frame = pd.read_csv(table, dtype=str, keep_default_na=False) if labels else \
            pd.read_csv(table)
    except Exception as exc:  # pandas' parser errors vary
        raise FolderError(f"cannot read targets file {table}: {exc}") from None
    if frame.shape[1] < 2:
        raise FolderError(f"{table} needs an image column and at least one target column")
    image_col = "path" if "path" in frame.columns else frame.columns[0]
    names = columns or [c for c in frame.columns if c != image_col]
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise FolderError(f"{table} has no column {missing[0]!r} (columns: "
                          f"{list(frame.columns)})")
    targets = frame[names]
    if labels:
        targets = targets.astype(object).where(targets != "", None)
    for name in names if not labels else []:
        values = pd.to_numeric(targets[name], errors="coerce")
        bad = values.isna().to_numpy().nonzero()[0]
        if len(bad):
            raise FolderError(f"{table}, row {bad[0] + 2}: target {name!r} is "
                              f"{targets[name].iloc[bad[0]]!r}, not a number")
    paths = []
    for row, item in enumerate(frame[image_col].astype(str)):
        path = Path(item) if Path(item).is_absolute() else folder / item
        if not path.is_file():
            raise FolderError(f"{table}, row {row + 2}: image {path} not found")
        paths.append(path)
    return paths, targets if labels else targets.astype(float)


def load_mask_folder(
    images: str | os.PathLike, masks: str | os.PathLike
) -> tuple[list[Path], list[Path], list[Path]]:
    """Pair the images of a folder with their masks in another, by file stem.

    ``images/a/cat.jpg`` pairs with ``masks/cat.png`` (or ``masks/a/cat.png``): the mask
    of an image is the file of the masks folder (searched recursively) with the same
    name without extension.

    Parameters
    ----------
    images : path
        Folder of images, searched recursively.
    masks : path
        Folder of label images (single-channel PNGs), searched recursively.

    Returns
    -------
    image_paths, mask_paths : list of Path
        Paired, sorted by image path.
    unused : list of Path
        Mask files whose stem matches no image.

    Raises
    ------
    FolderError
        If a folder is missing or empty, two files of a folder share a stem, or an image
        has no mask.
    """
    found = {}
    for role, folder in (("image", Path(images)), ("mask", Path(masks))):
        if not folder.is_dir():
            raise FolderError(f"{role} folder not found: {folder}")
        paths, _ = _scan(folder)
        if not paths:
            raise FolderError(f"no image files in the {role} folder {folder}")
        by_stem: dict[str, Path] = {}
        for path in paths:
            if path.stem in by_stem:
                raise FolderError(f"{by_stem[path.stem]} and {path} share the name "
                                  f"{path.stem!r}; images and masks pair by file name, so "
                                  f"names must be unique within the {role} folder")
            by_stem[path.stem] = path
        found[role] = by_stem
    missing = [p for stem, p in found["image"].items() if stem not in found["mask"]]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FolderError(f"no mask for {missing[0]}{more} in {masks} (masks pair with "
                          f"images by file name: {missing[0].stem}.png)")
    pairs = sorted(found["image"].items(), key=lambda item: item[1])
    unused = sorted(p for stem, p in found["mask"].items() if stem not in found["image"])
    return [p for _, p in pairs], [found["mask"][stem] for stem, _ in pairs], unused


__all__ = ["IMAGE_EXTENSIONS", "list_images", "load_image_folder", "load_mask_folder",
           "load_targets_table"]
