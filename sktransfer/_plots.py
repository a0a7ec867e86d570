"""A figure of the images a classifier gets most wrong, Grad-CAM maps overlaid (fastai's
``plot_top_losses``); matplotlib is imported only here, when a figure is drawn."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np
import torch

from ._gradcam import explainer
from ._losses_table import top_losses
from .images import as_image_source

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TITLE = "predicted / true / loss / probability"


def require_matplotlib():
    """matplotlib's :class:`~matplotlib.figure.Figure`, or how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plot_top_losses needs matplotlib: pip install "
                          "'sktransfer[plot]'") from exc
    return Figure


def as_display(image: object) -> np.ndarray:
    """An image as :meth:`ImageSource.read` gives it, as an ``(H, W, 3)`` array to show."""
    if isinstance(image, torch.Tensor):
        array = image.permute(1, 2, 0).cpu().numpy()
        return array if array.dtype == np.uint8 else np.clip(array, 0.0, 1.0)
    return np.asarray(image)


def plot_top_losses(estimator: object, X: object, y: object, *, k: int | None = 9,
                    heatmaps: bool = True, path: str | os.PathLike | None = None) -> Figure:
    """Show the images of highest loss, with where the network looked.

    A grid of the ``k`` images of :func:`~sktransfer.inspect.top_losses`, each titled
    "predicted / true / loss / probability" (of the predicted class), as fastai's
    ``plot_top_losses``. With ``heatmaps``, each shows its Grad-CAM map of the predicted
    class (:func:`~sktransfer.inspect.explain`) overlaid semi-transparently, when the
    estimator is one that ``explain`` takes; other classifiers get the images alone.

    Parameters
    ----------
    estimator : classifier
        Fitted, with ``predict_proba`` and ``classes_``.
    X : images
        File paths, arrays, PIL images... (see :func:`sktransfer.images.as_image_source`).
    y : array-like of shape (n_samples,)
        The true label of each image.
    k : int or None, default=9
        How many images to show; ``None`` shows them all.
    heatmaps : bool, default=True
        Overlay each image's Grad-CAM map when the estimator can be explained.
    path : str or path-like, default=None
        Also save the figure there, as a PNG.

    Returns
    -------
    figure : matplotlib.figure.Figure
        One panel per image, highest loss first (a plain ``Figure``, not registered with
        pyplot: Jupyter shows it when it is a cell's value).

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    figure_class = require_matplotlib()
    table = top_losses(estimator, X, y, k=k)
    source = as_image_source(X).subset(table["index"].tolist())
    maps = None
    if heatmaps:
        try:
            explaining = explainer(estimator)
        except TypeError:  # not a network sktransfer can explain: the images alone
            explaining = None
        if explaining is not None:
            maps = explaining.maps(source, target=table["predicted"].to_numpy())
    n = len(table)
    columns = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / columns))
    figure = figure_class(figsize=(2.6 * columns, 2.8 * rows + 0.4), layout="constrained")
    for i, row in enumerate(table.to_dict("records")):
        ax = figure.add_subplot(rows, columns, i + 1)
        ax.imshow(as_display(source.read(i)))
        if maps is not None:
            ax.imshow(maps[i], cmap="jet", alpha=0.4, vmin=0.0, vmax=1.0)
        ax.set_title(f"{row['predicted']} / {row['true']} / {row['loss']:.2f} / "
                     f"{row['probability']:.2f}", fontsize=9)
        ax.set_axis_off()
    figure.suptitle(TITLE)
    if path is not None:
        figure.savefig(os.fspath(path), format="png")
    return figure


__all__: list[str] = []
