"""Small colour image sets drawn at run time: coloured discs and squares on a dark ground."""

import numpy as np


def shapes(n: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, size, size, 3)`` uint8 RGB images and ``(n,)`` labels (0: disc, 1: square)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size, 3), np.uint8)
    labels = rng.integers(0, 2, n)
    for i in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        r = rng.uniform(size * 0.15, size * 0.3)
        if labels[i] == 0:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        else:
            inside = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        images[i][inside] = rng.integers(60, 256, 3)
    return images, labels
