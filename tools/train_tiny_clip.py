"""Train the tiny CLIP of the tests' data on captioned synthetic shapes, and evaluate it.

The model is an open_clip ``CLIP`` built from a custom config (a 2-layer ViT on 32x32 images
and a 2-layer text transformer with the shipped BPE tokenizer), trained from scratch with
open_clip's ``ClipLoss`` on images from :mod:`sktransfer._captioned_shapes`, leaving out some
colour-shape combinations. Most training images (``--unnamed``, 70%) show a shape in a random
colour that no caption names: without them the model recognises shape through colour and
takes, say, a red square (never seen) for a red circle. Run as a script::

    python tools/train_tiny_clip.py            # trains (~4 minutes on 1 CPU thread), evaluates
    python tools/train_tiny_clip.py --eval-only

It writes to ``--out`` (``tests/data/tiny_clip/`` by default):

- ``tiny-clip.json``: the model config, as open_clip's own configs are, so that
  ``open_clip.add_model_config(<that file or folder>)`` registers the name ``tiny-clip``;
- ``open_clip_config.json``: the same config with its preprocessing, as open_clip's
  ``local-dir:`` (and Hugging Face hub) folders have it;
- ``open_clip_model.safetensors``: the weights, a float16 state dict;
- ``metrics.json``: what the evaluation below measured on the written weights.

Either way rebuilds it offline::

    open_clip.add_model_config("tests/data/tiny_clip")
    model = open_clip.create_model(
        "tiny-clip", pretrained="tests/data/tiny_clip/open_clip_model.safetensors")
    tokenizer = open_clip.get_tokenizer("tiny-clip")

    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:tests/data/tiny_clip")
    tokenizer = open_clip.get_tokenizer("local-dir:tests/data/tiny_clip")

The evaluation reloads the written weights that way and reports zero-shot accuracy
(``open_clip.build_zero_shot_classifier``: text embeddings averaged over templates) on fresh
images, for colour-shape combinations, shapes, colours and positions, separately on the
combinations seen in training and those held out; and a few-shot check (Tip-Adapter and a
logistic regression on the same embeddings, 1, 2 and 4 images per class, 3 seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image
from safetensors.torch import save_file
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sktransfer import _captioned_shapes as cs

ROOT = Path(__file__).resolve().parents[1]
NAME = "tiny-clip"
WEIGHTS = "open_clip_model.safetensors"

MODEL_CFG: dict = {
    "embed_dim": 32,
    "vision_cfg": {
        "image_size": 32,
        "patch_size": 8,
        "width": 64,
        "head_width": 32,
        "layers": 2,
        "mlp_ratio": 2.0,
    },
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 2,
        "mlp_ratio": 2.0,
    },
}
"""The architecture; the 49408 x 32 token embedding is most of its 1.7 M parameters."""

PREPROCESS_CFG: dict = {
    "size": [32, 32],
    "mean": list(OPENAI_DATASET_MEAN),
    "std": list(OPENAI_DATASET_STD),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}

TRAIN_TEMPLATES = ("{}", "{}.", "a photo of {}.", "an image of {}.", "{}, drawn.")
NOUNS = ("shape", "object", "thing")
COMBO_TEMPLATES = ("a {}.", "a photo of a {}.")
SHAPE_TEMPLATES = ("a {}.", "a photo of a {}.")
COLOUR_TEMPLATES = ("a {} shape.", "a photo of a {} object.")
POSITION_TEMPLATES = ("a shape {}.", "a photo of an object {}.")


def training_captions(attributes: dict[str, np.ndarray], rng: np.random.Generator) -> list[str]:
    """Captions that say all, or some, of each image's colour, shape and position.

    Each of colour, shape and position is left unsaid with its own probability (an unsaid
    shape becomes "shape", "object" or "thing"), and the caption goes into one of
    ``TRAIN_TEMPLATES``, so that prompts naming only a colour, or only a shape, mean something
    to the text tower.
    """
    out = []
    for colour, shape, position in zip(attributes["colour"], attributes["shape"],
                                       attributes["position"], strict=True):
        keep_colour, keep_shape, keep_position = rng.random(3) > (0.3, 0.3, 0.5)
        keep_colour = keep_colour and colour != ""  # an unnamed colour
        if not (keep_colour or keep_shape or keep_position):
            keep_shape = True
        text = cs.caption(str(colour) if keep_colour else None,
                          str(shape) if keep_shape else None,
                          str(position) if keep_position else None,
                          noun=NOUNS[rng.integers(len(NOUNS))])
        out.append(TRAIN_TEMPLATES[rng.integers(len(TRAIN_TEMPLATES))].format(text))
    return out


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(n, H, W, 3)`` uint8 images as the model's normalised ``(n, 3, H, W)`` input."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def write_configs(out: Path) -> None:
    """Write ``tiny-clip.json`` and ``open_clip_config.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.json").write_text(json.dumps(MODEL_CFG, indent=4) + "\n")
    local_dir_cfg = {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}
    (out / "open_clip_config.json").write_text(json.dumps(local_dir_cfg, indent=4) + "\n")


def train(args: argparse.Namespace, seen: list[tuple[str, str]]) -> torch.nn.Module:
    """Train a freshly built ``tiny-clip`` on images of the ``seen`` combinations."""
    torch.manual_seed(args.seed)
    model = open_clip.create_model(NAME, pretrained=None)
    tokenizer = open_clip.get_tokenizer(NAME)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{NAME}: {n_params / 1e6:.2f} M parameters, tokenizer context length "
          f"{tokenizer.context_length}")
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * progress))

    loss_fn = open_clip.ClipLoss()
    rng = np.random.default_rng(args.seed)
    model.train()
    start = time.perf_counter()
    running = 0.0
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        images, _, attributes = cs.render(args.batch_size, seed=args.seed * 1_000_003 + step,
                                          combos=seen, unnamed=args.unnamed)
        texts = tokenizer(training_captions(attributes, rng))
        image_features, text_features, logit_scale = model(to_tensor(images), texts)
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        running += loss.item()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            print(f"step {step + 1:5d}  loss {running / args.log_every:.3f}  "
                  f"logit_scale {model.logit_scale.exp().item():6.2f}  "
                  f"{time.perf_counter() - start:6.1f} s", flush=True)
            running = 0.0
    print(f"trained {args.steps} steps of {args.batch_size} in "
          f"{time.perf_counter() - start:.1f} s")
    return model.eval()


def save_weights(model: torch.nn.Module, out: Path) -> Path:
    """Write the state dict as float16 safetensors; return the file.

    The metadata is only ``{"format": "pt"}``: safetensors writes a metadata map of several
    keys in a random order, and one key keeps the file's bytes the same from run to run (the
    training's record is in ``metrics.json``).
    """
    state = {k: v.detach().to(torch.float16).contiguous() if v.is_floating_point()
             else v.detach().contiguous() for k, v in model.state_dict().items()}
    path = out / WEIGHTS
    save_file(state, str(path), metadata={"format": "pt"})
    return path


@torch.no_grad()
def image_features(model: torch.nn.Module, images: np.ndarray,
                   preprocess=None) -> torch.Tensor:
    """Normalised image embeddings, through ``preprocess`` (PIL images) if given."""
    if preprocess is None:
        x = to_tensor(images)
    else:
        x = torch.stack([preprocess(Image.fromarray(im)) for im in images])
    return torch.cat([model.encode_image(chunk, normalize=True) for chunk in x.split(512)])


def zero_shot(model, tokenizer, feats: torch.Tensor, classnames: list[str],
              templates: tuple[str, ...]) -> tuple[np.ndarray, torch.Tensor]:
    """Zero-shot predictions (class indices) and logits, the standard open_clip way."""
    weights = open_clip.build_zero_shot_classifier(model, tokenizer, classnames, templates,
                                                   num_classes_per_batch=None)
    logits = model.logit_scale.exp() * feats @ weights
    return logits.argmax(1).numpy(), logits


def _accuracy(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    if mask is not None:
        pred, truth = pred[mask], truth[mask]
    return float((pred == truth).mean())


def evaluate(model, tokenizer, args: argparse.Namespace, held_out: list[tuple[str, str]],
             preprocess=None) -> dict:
    """Zero-shot and few-shot accuracies on fresh images of every combination."""
    images, _, attrs = cs.render(args.n_test, seed=args.seed + 10_000)
    feats = image_features(model, images, preprocess)
    unseen = np.isin(attrs["combo"], [cs.combo_name(*c) for c in held_out])
    combos = [cs.combo_name(*c) for c in cs.all_combos()]
    tasks = {
        "combo": (combos, COMBO_TEMPLATES, attrs["combo"]),
        "shape": (list(cs.SHAPES), SHAPE_TEMPLATES, attrs["shape"]),
        "colour": (list(cs.COLOURS), COLOUR_TEMPLATES, attrs["colour"]),
        "position": ([cs.POSITION_PHRASES[p] for p in cs.POSITIONS], POSITION_TEMPLATES,
                     np.array([cs.POSITION_PHRASES[p] for p in attrs["position"]])),
    }
    results: dict = {"n_test": int(args.n_test), "n_unseen": int(unseen.sum()),
                     "logit_scale": float(model.logit_scale.exp().detach()),
                     "held_out": [cs.combo_name(*c) for c in held_out], "zero_shot": {}}
    combo_logits = None
    for task, (names, templates, truth_names) in tasks.items():
        pred, logits = zero_shot(model, tokenizer, feats, names, templates)
        truth = np.array([names.index(t) for t in truth_names])
        results["zero_shot"][task] = {
            "classes": len(names), "chance": 1 / len(names),
            "all": _accuracy(pred, truth), "seen": _accuracy(pred, truth, ~unseen),
            "unseen": _accuracy(pred, truth, unseen)}
        if task == "combo":
            combo_logits, combo_truth = logits, truth
    results["few_shot"] = few_shot(model, feats, combo_logits, combo_truth, unseen, combos,
                                   args)
    return results


def few_shot(model, feats: torch.Tensor, text_logits: torch.Tensor, truth: np.ndarray,
             unseen: np.ndarray, combos: list[str], args: argparse.Namespace) -> dict:
    """Tip-Adapter (training-free) and logistic regression with k images per combination.

    Tip-Adapter (Zhang et al. 2022): ``logits = text logits + alpha * exp(-beta (1 - cos(f,
    keys))) @ onehot(values)``, beta=5.5: with the paper's text logits (cosine x 100) and
    alpha=1, and with the model's own logit scale and alpha 1 or 10 (chosen on the test set,
    so optimistic). The support images are of every combination, the held-out ones included.
    """
    out: dict = {}
    n_classes = len(combos)
    for k in (1, 2, 4):
        rows: dict[str, list[float]] = {}
        for rep in range(3):
            sup_images, _, sup_attrs = cs.render(k * n_classes * 6, seed=args.seed + 20_000 + rep)
            # exactly k per class, the first k drawn of each
            sup_truth = np.array([combos.index(c) for c in sup_attrs["combo"]])
            take = np.concatenate([np.flatnonzero(sup_truth == c)[:k] for c in range(n_classes)])
            keys = image_features(model, sup_images[take])
            labels = sup_truth[take]
            values = torch.nn.functional.one_hot(torch.from_numpy(labels), n_classes).float()
            affinity = torch.exp(-5.5 * (1 - feats @ keys.T))
            cos_logits = text_logits / model.logit_scale.exp()
            cache_logits = affinity @ values
            scores = {
                "zero_shot": text_logits,
                "tip_adapter(100, alpha=1)": 100 * cos_logits + cache_logits,
                "tip_adapter(model, alpha=1)": text_logits + cache_logits,
                "tip_adapter(model, alpha=10)": text_logits + 10 * cache_logits,
                "logreg(C=1)": None,
                "logreg(C=100)": None,
            }
            for name, logits in scores.items():
                if name.startswith("logreg"):
                    c = float(name[name.index("=") + 1:-1])
                    clf = LogisticRegression(C=c, max_iter=2000).fit(keys.numpy(), labels)
                    pred = clf.predict(feats.numpy())
                else:
                    pred = logits.argmax(1).numpy()
                rows.setdefault(f"{name} all", []).append(_accuracy(pred, truth))
                rows.setdefault(f"{name} unseen", []).append(_accuracy(pred, truth, unseen))
        out[f"k={k}"] = {name: [round(float(np.mean(v)), 3), round(float(np.std(v)), 3)]
                         for name, v in rows.items()}
    return out


def reload(out: Path):
    """Rebuild the written model offline, both ways open_clip can; check they agree."""
    open_clip.add_model_config(out)
    model = open_clip.create_model(NAME, pretrained=str(out / WEIGHTS)).eval()
    tokenizer = open_clip.get_tokenizer(NAME)
    local, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    local.eval()
    local_tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
    texts = tokenizer(["a red circle on the left", "a photo of a blue cross."])
    assert torch.equal(texts, local_tokenizer(["a red circle on the left",
                                               "a photo of a blue cross."]))
    images, _, _ = cs.render(8, seed=1)
    with torch.no_grad():
        a = model.encode_image(to_tensor(images))
        b = local.encode_image(torch.stack([preprocess(Image.fromarray(im)) for im in images]))
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
        assert torch.equal(model.encode_text(texts), local.encode_text(texts))
    return model, tokenizer, preprocess


def print_summary(results: dict) -> None:
    """Print the metrics as two small tables."""
    print(f"logit_scale {results['logit_scale']:.2f}; {results['n_test']} test images, "
          f"{results['n_unseen']} of held-out combinations {results['held_out']}")
    print(f"{'zero-shot':10s} {'classes':>7s} {'chance':>7s} {'all':>6s} {'seen':>6s} "
          f"{'unseen':>6s}")
    for task, r in results["zero_shot"].items():
        print(f"{task:10s} {r['classes']:7d} {r['chance']:7.3f} {r['all']:6.3f} "
              f"{r['seen']:6.3f} {r['unseen']:6.3f}")
    print("few-shot, combinations (mean +- std over 3 support sets)")
    for k, rows in results["few_shot"].items():
        for name, (mean, std) in rows.items():
            print(f"  {k} {name:38s} {mean:.3f} +- {std:.3f}")


def main(argv: list[str] | None = None) -> int:
    """Train (unless ``--eval-only``), write, reload and evaluate; print the metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "tiny_clip")
    parser.add_argument("--steps", type=int, default=3500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-held-out", type=int, default=4)
    parser.add_argument("--unnamed", type=float, default=0.7,
                        help="share of training images in colours that no caption names")
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--eval-only", action="store_true",
                        help="evaluate the weights already in --out")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seen, held_out = cs.held_out_combos(args.n_held_out, seed=args.seed)
    print("held out:", [cs.combo_name(*c) for c in held_out])

    write_configs(args.out)
    open_clip.add_model_config(args.out / f"{NAME}.json")
    if not args.eval_only:
        start = time.perf_counter()
        model = train(args, seen)
        train_seconds = time.perf_counter() - start
        path = save_weights(model, args.out)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")

    model, tokenizer, preprocess = reload(args.out)
    results = evaluate(model, tokenizer, args, held_out, preprocess)
    if not args.eval_only:
        results["train_seconds"] = round(train_seconds, 1)
        results["args"] = {k: v for k, v in vars(args).items() if k != "out"}
        results["open_clip_version"] = open_clip.__version__
        results["torch_version"] = torch.__version__
        results["seen"] = [cs.combo_name(*c) for c in seen]
    print_summary(results)
    if not args.eval_only:
        (args.out / "metrics.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
