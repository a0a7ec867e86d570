"""Another app, with no Python ML stack: classify a folder of images with an exported graph.

Needs only onnxruntime, numpy and Pillow: no torch, torchvision, skorch, scikit-learn or
sktransfer. The graph (``sktransfer export model.joblib -o model.onnx``, or
``sktransfer.export_onnx``) carries its contract in its metadata: the image size it takes
and how to get there, its classes, its outputs. This app reads it and prepares each image
as the library does (shorter side resized with Pillow's antialiased filter, bilinear or
bicubic as the contract says, then the centre crop), or hands images over at their own
size to a graph exported with ``resize=True``. The same steps port to any language with
an ONNX runtime.

Run: python examples/onnx_app.py model.onnx FOLDER   (prints "path,label,probability")
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def prepare(path: Path, contract: dict) -> np.ndarray:
    """One image as the graph takes it: uint8 (H, W, 3) RGB."""
    image = Image.open(path).convert("RGB")
    size = contract["input"]["size"]
    if size is None:  # the graph resizes and crops itself
        return np.asarray(image)
    prep = contract["preprocessing"]
    crop = prep["crop_size"]
    resample = Image.BICUBIC if prep["interpolation"] == "bicubic" else Image.BILINEAR
    if prep["resize_size"] is None:  # segmentation: straight to the square
        return np.asarray(image.resize((crop, crop), Image.BILINEAR))
    w, h = image.size
    short, long = min(w, h), max(w, h)
    new_long = int(prep["resize_size"] * long / short)
    new_w, new_h = (prep["resize_size"], new_long) if w <= h else (new_long,
                                                                   prep["resize_size"])
    image = image.resize((new_w, new_h), resample)
    top, left = round((new_h - crop) / 2), round((new_w - crop) / 2)
    return np.asarray(image.crop((left, top, left + crop, top + crop)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an .onnx graph written by sktransfer")
    parser.add_argument("folder", help="a folder of images")
    args = parser.parse_args()

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    contract = json.loads(session.get_modelmeta().custom_metadata_map["sktransfer.contract"])
    if "label" not in contract["outputs"]:
        raise SystemExit(f"{args.model} gives {contract['outputs']}, not labels")
    paths = sorted(p for p in Path(args.folder).rglob("*") if p.suffix.lower() in EXTENSIONS)
    print("path,label,probability")
    for path in paths:  # one image per call: sizes may differ when the graph resizes
        outputs = session.run(None, {"images": prepare(path, contract)[None]})
        result = dict(zip(contract["outputs"], outputs, strict=True))
        probability = result["probabilities"][0].max() if "probabilities" in result else ""
        print(f"{path},{result['label'][0]},{probability}")


if __name__ == "__main__":
    main()
