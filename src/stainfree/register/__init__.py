"""Cross-modal registration (after Ounkomol et al. 2018): place a predicted tile in a large target image.

- :mod:`~stainfree.register.transform`: similarity transforms, resampling, the mean displacement error
- :mod:`~stainfree.register.match`: FFT normalized cross-correlation template matching, coarse to fine
- :mod:`~stainfree.register.refine`: residual optical flow and a RANSAC similarity fit
- :mod:`~stainfree.register.core`: :func:`register` (match, refine, convergence test) and the content filter

numpy, scipy and scikit-image only.
"""

from stainfree.register.core import Registration, content_fraction, has_content, register
from stainfree.register.match import Match, match
from stainfree.register.transform import (
    about_center,
    compose,
    inverse,
    mean_displacement_error,
    params,
    rescale,
    similarity,
    warp_into,
)

__all__ = [
    "Match",
    "Registration",
    "about_center",
    "compose",
    "content_fraction",
    "has_content",
    "inverse",
    "match",
    "mean_displacement_error",
    "params",
    "register",
    "rescale",
    "similarity",
    "warp_into",
]
