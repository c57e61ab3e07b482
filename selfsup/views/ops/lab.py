r"""CIE L*a*b* colour space (D65): batched sRGB <-> Lab conversions on the training device.

sRGB values in ``[0, 1]`` are linearised (IEC 61966-2-1), mapped to CIE XYZ with the sRGB
primaries and divided by the D65 white, then

.. math::

    L = 116 f(Y) - 16, \quad a = 500 (f(X) - f(Y)), \quad b = 200 (f(Y) - f(Z)), \qquad
    f(t) = \begin{cases} t^{1/3} & t > \delta^3 \\ t / (3 \delta^2) + 4/29 & \text{otherwise}
    \end{cases}, \quad \delta = 6/29.

``L`` lies in ``[0, 100]``; ``a`` and ``b`` in about ``[-87, 99]`` and ``[-108, 95]`` for sRGB
colours. The white is the sum of the matrix rows, so every grey (``R = G = B``) has
``a = b = 0`` up to float round-off.

The conversions are element-wise arithmetic (no matmul), so mixed-precision autocast leaves
them in the input's dtype and they export to ONNX / TorchScript as plain operators.

Example:
    >>> lab = rgb_to_lab(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))  # sRGB red
    >>> [round(v, 1) for v in lab.flatten().tolist()]
    [53.2, 80.1, 67.2]
    >>> back = lab_to_rgb(lab).flatten()  # the round trip, within float32 round-off
    >>> bool((back - torch.tensor([1.0, 0.0, 0.0])).abs().max() < 1e-5)
    True
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["LAB_WHITE", "lab_to_rgb", "lightness", "rgb_to_lab"]

# sRGB primaries -> CIE XYZ (IEC 61966-2-1), rows X, Y, Z.
_RGB_TO_XYZ = (
    (0.4124, 0.3576, 0.1805),
    (0.2126, 0.7152, 0.0722),
    (0.0193, 0.1192, 0.9505),
)
# D65 white of the standard: the image of RGB (1, 1, 1), so greys are neutral (a = b = 0).
LAB_WHITE = tuple(sum(row) for row in _RGB_TO_XYZ)  # (0.9505, 1.0, 1.089)
# Its exact inverse (float64), so that lab_to_rgb(rgb_to_lab(x)) == x up to round-off.
_XYZ_TO_RGB = tuple(
    tuple(row) for row in torch.linalg.inv(torch.tensor(_RGB_TO_XYZ, dtype=torch.float64)).tolist()
)
_DELTA = 6.0 / 29.0


def _check(images: Tensor, what: str) -> None:
    if images.ndim < 3 or images.shape[-3] != 3 or not images.is_floating_point():
        raise ValueError(
            f"{what} expects float images [..., 3, H, W], got {images.dtype} "
            f"{tuple(images.shape)}; convert grey images to 3 channels and uint8 pixels with "
            "images.float() / 255"
        )


def _mix(c: tuple[Tensor, Tensor, Tensor], matrix: tuple[tuple[float, ...], ...]) -> list[Tensor]:
    return [row[0] * c[0] + row[1] * c[1] + row[2] * c[2] for row in matrix]


def _f(t: Tensor) -> Tensor:
    """CIE's ``f``: a cube root, linear near 0 (the clamp keeps the unused branch finite)."""
    return torch.where(
        t > _DELTA**3, t.clamp_min(_DELTA**3).pow(1.0 / 3.0), t / (3 * _DELTA**2) + 4 / 29
    )


def _linearise(rgb: Tensor) -> Tensor:
    """sRGB in ``[0, 1]`` (clamped) -> linear light (IEC 61966-2-1 transfer function)."""
    rgb = rgb.clamp(0.0, 1.0)
    return torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055).pow(2.4))


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB ``[..., 3, H, W]`` in ``[0, 1]`` (clamped) -> Lab ``[..., 3, H, W]`` (L, a, b)."""
    _check(rgb, "rgb_to_lab")
    r, g, b = _linearise(rgb).unbind(dim=-3)
    fx, fy, fz = (_f(v / w) for v, w in zip(_mix((r, g, b), _RGB_TO_XYZ), LAB_WHITE))
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """Lab ``[..., 3, H, W]`` -> sRGB ``[..., 3, H, W]``, clamped to ``[0, 1]`` (colours outside
    the sRGB gamut, e.g. a predicted ab too saturated for its L, are clipped per channel)."""
    _check(lab, "lab_to_rgb")
    lightness_, a, b = lab.unbind(dim=-3)
    fy = (lightness_ + 16.0) / 116.0
    fs = (fy + a / 500.0, fy, fy - b / 200.0)
    xyz = [
        torch.where(f > _DELTA, f.pow(3), 3 * _DELTA**2 * (f - 4 / 29)) * w
        for f, w in zip(fs, LAB_WHITE)
    ]
    linear = torch.stack(_mix((xyz[0], xyz[1], xyz[2]), _XYZ_TO_RGB), dim=-3).clamp(0.0, 1.0)
    srgb = torch.where(
        linear <= 0.0031308,
        linear * 12.92,
        1.055 * linear.clamp_min(0.0031308).pow(1.0 / 2.4) - 0.055,
    )
    return srgb.clamp(0.0, 1.0)


def lightness(rgb: Tensor) -> Tensor:
    """The L channel alone: sRGB ``[..., 3, H, W]`` in ``[0, 1]`` -> ``[..., 1, H, W]`` in
    ``[0, 100]`` (``rgb_to_lab(rgb)[..., :1, :, :]`` without computing a and b)."""
    _check(rgb, "lightness")
    r, g, b = _linearise(rgb).unbind(dim=-3)
    fy = _f(_mix((r, g, b), _RGB_TO_XYZ[1:2])[0] / LAB_WHITE[1])
    return (116.0 * fy - 16.0).unsqueeze(-3)
