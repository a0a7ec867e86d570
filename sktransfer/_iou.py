"""Mean intersection over union, the score of semantic segmentation."""

from __future__ import annotations

import numpy as np

from ._masks import as_mask_source


def confusion(y_true: object, y_pred: object, *, n_classes: int,
              ignore_index: int = 255) -> np.ndarray:
    """Pixel counts ``C[true, predicted]`` over all masks, ``ignore_index`` pixels left out.

    Parameters
    ----------
    y_true, y_pred : masks
        One ``(H, W)`` label array (or mask file) per image, pairwise of equal size.
    n_classes : int
        Number of classes.
    ignore_index : int, default=255
        True label of pixels that count nowhere.

    Returns
    -------
    ndarray of shape (n_classes, n_classes), dtype int64
    """
    true = as_mask_source(y_true, len(y_true))
    pred = as_mask_source(y_pred, len(true))
    counts = np.zeros(n_classes * n_classes, dtype=np.int64)
    for i in range(len(true)):
        t, p = true.read(i), pred.read(i)
        if t.shape != p.shape:
            raise ValueError(f"y_true[{i}] is {t.shape} but y_pred[{i}] is {p.shape}")
        keep = t != ignore_index
        t, p = t[keep].astype(np.int64), p[keep].astype(np.int64)
        bad = (t < 0) | (t >= n_classes) | (p < 0) | (p >= n_classes)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"mask {i} holds the label {t[j]} (true) / {p[j]} (predicted); "
                             f"labels are 0..{n_classes - 1} or ignore_index={ignore_index}")
        counts += np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def mean_iou_score(y_true: object, y_pred: object, *, n_classes: int | None = None,
                   ignore_index: int = 255) -> float:
    """Mean over classes of the intersection over union of true and predicted pixels.

    Pixels are pooled over all images before the ratio is taken (the PASCAL VOC and
    Cityscapes convention); a class absent from both the truth and the prediction counts
    in no mean. Pixels whose true label is ``ignore_index`` count nowhere.

    Parameters
    ----------
    y_true, y_pred : masks
        One ``(H, W)`` integer label array per image (an ``(n, H, W)`` array, a list of
        arrays of any sizes, or mask file paths), pairwise of equal size.
    n_classes : int, default=None
        Number of classes; default: the largest label seen plus one.
    ignore_index : int, default=255
        True label of unannotated pixels.

    Returns
    -------
    float
        In ``[0, 1]``; 1 is a perfect segmentation.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer import mean_iou_score
    >>> truth = np.array([[[0, 0, 1, 1]]])
    >>> mean_iou_score(truth, np.array([[[0, 1, 1, 1]]]))  # IoU 1/2 and 2/3
    0.5833333333333333
    """
    if n_classes is None:  # read the masks once (files too), then count
        true = as_mask_source(y_true, len(y_true))
        pred = as_mask_source(y_pred, len(true))
        y_true = [true.read(i) for i in range(len(true))]
        y_pred = [pred.read(i) for i in range(len(pred))]
        labels = [int(m[m != ignore_index].max(initial=-1)) for m in y_true]
        labels += [int(m.max(initial=-1)) for m in y_pred]
        n_classes = max(max(labels) + 1, 1)
    matrix = confusion(y_true, y_pred, n_classes=n_classes, ignore_index=ignore_index)
    inter = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - inter
    present = union > 0
    if not present.any():
        raise ValueError(f"every true pixel is ignore_index={ignore_index}: nothing to score")
    return float(np.mean(inter[present] / union[present]))


def mean_iou_scorer(estimator, X: object, y: object) -> float:
    """``scoring=`` callable for a search over segmenters: the estimator's mean IoU.

    Parameters
    ----------
    estimator : FineTuneSegmenter
        Fitted.
    X : images
        The images to segment.
    y : masks
        Their true masks.

    Returns
    -------
    float
        :func:`mean_iou_score` with the estimator's ``n_classes_`` and ``ignore_index``.
    """
    return estimator.score(X, y)
