"""A folder of hostile files: each is read correctly or named in a clear error; no crash."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from sktransfer import ImageInputError, PretrainedFeatureExtractor
from sktransfer.cli import main
from sktransfer.images import as_image_source

from ._helpers import tiny_cnn
from .hostile_files import ERROR, READ, _photo, build_hostile_folder, mutants, read_in_subprocess

MESSAGES = {
    "truncated.jpg": "is corrupt or truncated",
    "zero_bytes.jpg": "is an empty (zero-byte) file",
    "huge_declared.png": "declares too many pixels (decompression-bomb guard)",
    "text_named.jpg": "is not a readable image file",
    "directory.jpg": "is a directory, not an image file",
    "missing.jpg": "file not found",
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("hostile")
    return root, build_hostile_folder(root)


def as_array(img) -> np.ndarray:
    if isinstance(img, torch.Tensor):
        return img.permute(1, 2, 0).numpy()
    return np.asarray(img)


def test_every_hostile_file_is_read_or_named(hostile):
    root, expected = hostile
    extractor = PretrainedFeatureExtractor(tiny_cnn(), image_size=16).fit()
    for name, outcome in expected.items():
        path = root / name
        if outcome == READ:
            out = extractor.transform([path])
            assert out.shape == (1, extractor.n_features_out_) and np.isfinite(out).all()
        else:
            with pytest.raises(ImageInputError) as info:
                extractor.transform([root / "sixteen_bit.png", path])
            message = str(info.value)
            assert f"X[1] ('{path}')" in message and MESSAGES[name] in message, message


def test_odd_but_valid_files_decode_to_the_right_pixels(hostile):
    root, _ = hostile
    photo = _photo()
    read = {name: as_array(as_image_source([root / name]).read(0))
            for name in ("sixteen_bit.png", "palette_transparent.png", "cmyk.jpg",
                         "exif_rotated.jpg")}
    # 16-bit grey: scaled to 8 bits exactly, not clipped at 255
    assert np.array_equal(read["sixteen_bit.png"][..., 0], photo[..., 0])
    # palette with transparency: the transparent colour is composited on white
    assert read["palette_transparent.png"].shape == photo.shape
    assert (read["palette_transparent.png"] == 255).all(axis=-1).any()
    # CMYK: converted back to RGB colours (JPEG loss aside)
    assert np.abs(read["cmyk.jpg"].astype(int) - photo).mean() < 6
    # EXIF orientation 6: displayed rotated 90 degrees clockwise, so the red top-left
    # corner is now top-right and the picture is portrait
    rotated = read["exif_rotated.jpg"].astype(int)
    assert rotated.shape == (64, 48, 3)
    assert tuple(rotated[2, -3]) == pytest.approx((255, 0, 0), abs=40)
    assert tuple(rotated[2, 2]) != pytest.approx((255, 0, 0), abs=40)


def test_decompression_bomb_is_refused_without_allocating(hostile):
    root, _ = hostile
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ImageInputError, match="decompression-bomb"):
        as_image_source([root / "huge_declared.png"]).read(0)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 50  # 200,000 x 200,000 RGB would be 112 GiB


def test_hostile_folder_in_a_crash_proof_child(hostile):
    root, expected = hostile
    results = read_in_subprocess([root / name for name in expected])
    assert {Path(p).name: r for p, r in results.items()} == expected


def test_damaged_files_never_crash(tmp_path):
    """Truncated, overwritten and header-damaged JPEG/PNG/GIF/BMP/TIFF/WebP files."""
    paths = mutants(seed=0, count=280, folder=tmp_path)
    results = read_in_subprocess(paths)
    crashes = {p: r for p, r in results.items() if r not in (READ, ERROR)}
    assert len(results) == len(paths) and not crashes, crashes
    outcomes = set(results.values())
    assert outcomes == {READ, ERROR}  # the damage produced both kinds


UNREADABLE = textwrap.dedent(
    """
    import os, sys
    from PIL import Image
    Image.init()  # load PIL's format plugins before giving up the privileges
    from sktransfer import ImageInputError
    from sktransfer.images import as_image_source
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)  # 'nobody': root would read the file regardless of its mode
    try:
        as_image_source([sys.argv[1]]).read(0)
    except ImageInputError as exc:
        print(exc)
    """
)


def test_unreadable_file_is_named():
    folder = Path(tempfile.mkdtemp())  # not under pytest's private (0700) base folder
    try:
        folder.chmod(0o755)
        path = folder / "locked.png"
        from PIL import Image

        Image.fromarray(_photo()).save(path)
        path.chmod(0o000)
        result = subprocess.run([sys.executable, "-c", UNREADABLE, str(path)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"X[0] ('{path}'): permission denied (Permission denied)"
    finally:
        shutil.rmtree(folder)


def test_cli_on_hostile_folders(hostile, tmp_path, capsys):
    root, expected = hostile
    tiny = ["--model", "tests._helpers:tiny_cnn", "--image-size", "16", "-q"]
    good = tmp_path / "good"
    good.mkdir()
    for name, outcome in expected.items():
        if outcome == READ:
            shutil.copy(root / name, good / name)
    assert main(["extract", str(good), "-o", str(tmp_path / "e.npy"), *tiny]) == 0
    assert np.load(tmp_path / "e.npy").shape[0] == 4
    capsys.readouterr()
    assert main(["extract", str(root), "-o", str(tmp_path / "all.npy"), *tiny]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(root) in err and not (tmp_path / "all.npy").exists()


def test_documented_outcomes_match(hostile):
    """The user guide's table of hostile files lists exactly these outcomes."""
    _, expected = hostile
    guide = (Path(__file__).parents[1] / "docs" / "user_guide.md").read_text()
    for name, outcome in expected.items():
        row = next(line for line in guide.splitlines() if line.startswith(f"| `{name}`"))
        documented = row.split("|")[2].strip()
        assert documented.startswith(f"{outcome}:"), row
        if outcome == ERROR:
            assert MESSAGES[name] in documented, row
