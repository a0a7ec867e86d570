"""The ``zero-shot`` command: label a folder of images with classes named in text, and with
a few labelled images per class (``--shots``) when given."""

from __future__ import annotations

import argparse

from . import _cli_common as common


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``zero-shot`` command's options."""
    p.add_argument("folder", help="folder of images to label (searched recursively)")
    p.add_argument("--classes", default=None, metavar="A,B,C",
                   help="the class names, comma-separated (default: the subfolders of "
                        "--shots)")
    p.add_argument("--template", action="append", default=None, metavar="TEXT",
                   help="prompt template with {} where the class name goes (repeat for an "
                        "ensemble; default: the CLIP authors' 7 ImageNet templates)")
    p.add_argument("--shots", default=None, metavar="DIR",
                   help="few-shot: a folder with one subfolder of a few images per class")
    p.add_argument("-o", "--out", default=None,
                   help="CSV file (default: standard output)")
    common.add_backbone_options(
        p, model_default="open_clip:ViT-B-32/laion2b_s34b_b79k",
        model_help="vision-language model: open_clip:ARCH/TAG, open_clip:local-dir:FOLDER "
                   "(default: open_clip:ViT-B-32/laion2b_s34b_b79k; needs sktransfer[clip])",
        weights_help="DEFAULT (the model's pretrained weights), a local open_clip weights "
                     "file, or 'none' for random init (default: DEFAULT)")


def zero_shot(args) -> int:
    """Label FOLDER's images; write a label and the probabilities per image."""
    from ._zero_shot import ZeroShotClassifier
    from .folders import list_images, load_image_folder

    classes = None
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not classes:
            raise common.CliError(f"--classes {args.classes!r}: no class name")
    if classes is None and args.shots is None:
        raise common.CliError("name the classes with --classes, or give --shots DIR")
    X, y = None, None
    if args.shots is not None:
        shots, y, skipped = load_image_folder(args.shots)
        common.warn_skipped(skipped)
        X = [str(p) for p in shots]
    paths, skipped = list_images([args.folder])
    common.warn_skipped(skipped)
    if not paths:
        raise common.CliError(f"{args.folder}: no image found")
    params = common.backbone_params(args)
    classifier = ZeroShotClassifier(**params, classes=classes, templates=args.template,
                                    verbose=not args.quiet).fit(X, y)
    return common.write_predictions(classifier, paths, args.out)
