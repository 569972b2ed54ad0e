"""Procedural cartoon faces: a built-in data set whose generating factors are known.

Real image sets do not tell us what varies between two images, so they cannot show whether a latent
element tracks "smile" or "head turn", nor which images are broken. Here every image is drawn from ten
continuous factors (returned alongside the images) and a chosen share of images is made defective in one
of four visible ways, so disentanglement and anomaly-detection tools have a ground truth to check against.

Factors, in ``FACTOR_NAMES`` order, as stored (each drawn uniformly over its range):

==================  =========  ===================================================================
name                range      what it changes
==================  =========  ===================================================================
skin_tone           [0, 1]     skin colour, light (0) to dark (1)
hair_colour         [0, 1]     hair and eyebrow colour: blond (0), auburn (0.5), black (1)
hair_volume         [0, 1]     how far the hair puffs out above the head and falls down the sides
eye_size            [0, 1]     radius of the eyes (and pupils)
eye_spacing         [0, 1]     distance between the eyes
mouth_curve         [-1, 1]    frown (-1), straight (0), smile (+1)
head_turn           [-1, 1]    head and features shift left (-1) or right (+1), features more
head_size           [0, 1]     overall scale of the head, hair and features
light_direction     [-1, 1]    horizontal brightness gradient: lit from the left (-1) or right (+1)
background_tone     [0, 1]     background brightness, dark (0) to light (1)
==================  =========  ===================================================================

Anomalies (``ANOMALY_KINDS``), each obvious to the eye and off the manifold of normal faces:
``no_eyes`` (skin where the eyes should be), ``smeared`` (a long one-sided box blur drags the picture
sideways or downwards), ``wrong_colours`` (colour channels permuted, so the skin turns green or blue) and
``occluded`` (a solid rectangle of a random colour over much of the face).

Geometry lives in normalised coordinates (x right, y down, both in [-1, 1] over the image), so the
drawing scales with ``size``. Shapes are signed distance fields turned into coverage with a one-pixel
linear ramp, which anti-aliases the edges; layers are composited back to front with "over".
"""

from __future__ import annotations

import numbers

import numpy as np

FACTOR_NAMES: tuple[str, ...] = (
    "skin_tone",
    "hair_colour",
    "hair_volume",
    "eye_size",
    "eye_spacing",
    "mouth_curve",
    "head_turn",
    "head_size",
    "light_direction",
    "background_tone",
)
ANOMALY_KINDS: tuple[str, ...] = ("no_eyes", "smeared", "wrong_colours", "occluded")

_SIGNED_FACTORS = frozenset({"mouth_curve", "head_turn", "light_direction"})  # stored in [-1, 1]
# Per-image randomness beyond the factors: which images are defective and how. Drawn in the same
# row of one uniform matrix as the factors, so image i never depends on n.
_EXTRA_NAMES = ("priority", "kind", "smear_axis", "permutation", "occ_x", "occ_y", "occ_w", "occ_h",
                "occ_r", "occ_g", "occ_b")
_CHUNK = 64  # images drawn at once: about 3 MB of float32 at 64x64, which stays in cache and is fastest

_LIGHT_SKIN = np.array([0.98, 0.84, 0.72], np.float32)
_DARK_SKIN = np.array([0.40, 0.25, 0.16], np.float32)
_HAIR_STOPS = np.array([0.0, 0.5, 1.0], np.float32)
_HAIR_COLOURS = np.array([[0.95, 0.80, 0.42], [0.58, 0.26, 0.10], [0.07, 0.05, 0.05]], np.float32)
_BACKGROUND_TINT = np.array([0.86, 0.93, 1.0], np.float32)
_SHIRT = np.array([0.25, 0.36, 0.58], np.float32)
_EYE_WHITE = np.array([0.97, 0.97, 0.97], np.float32)
_PUPIL = np.array([0.10, 0.12, 0.20], np.float32)
_MOUTH = np.array([0.62, 0.14, 0.18], np.float32)
_PERMUTATIONS = ((2, 0, 1), (2, 1, 0))  # skin turns green or blue


def make_faces(n: int, seed: int = 0, size: int = 64, anomaly_fraction: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Draw ``n`` faces of ``size``x``size`` pixels.

    Returns ``(images, labels, factors)``: images uint8 ``(n, size, size, 3)``; labels int64 ``(n,)``,
    0 for a normal face and 1 for a defective one; factors maps every name in ``FACTOR_NAMES`` to a
    float32 ``(n,)`` array in the range given in the module docstring, plus ``"anomaly_kind"``, an int64
    ``(n,)`` array holding -1 for normal images and an index into ``ANOMALY_KINDS`` otherwise.

    Exactly ``round(anomaly_fraction * n)`` images are defective: those with the lowest per-image
    priority draw, so for a given ``n`` a larger fraction only adds defects and a defective image is its
    normal twin damaged. The output is a pure function of the arguments, and with ``anomaly_fraction=0``
    image i does not depend on ``n`` (a longer set extends a shorter one), because all randomness comes
    from one row per image of a single uniform draw.
    """
    _check_arguments(n, size, anomaly_fraction)
    n, size = int(n), int(size)
    rng = np.random.default_rng(seed)
    uniform = rng.random((n, len(FACTOR_NAMES) + len(_EXTRA_NAMES)))
    columns = iter(np.ascontiguousarray(uniform.T, dtype=np.float32))
    factors = {name: next(columns) for name in FACTOR_NAMES}
    extra = {name: next(columns) for name in _EXTRA_NAMES}
    for name in _SIGNED_FACTORS:
        factors[name] = factors[name] * np.float32(2) - np.float32(1)

    n_defective = round(anomaly_fraction * n)
    kind = np.full(n, -1, np.int64)
    defective = np.argsort(extra["priority"], kind="stable")[:n_defective]
    kind_draw = np.minimum((extra["kind"] * len(ANOMALY_KINDS)).astype(np.int64), len(ANOMALY_KINDS) - 1)
    kind[defective] = kind_draw[defective]

    images = np.empty((n, size, size, 3), np.uint8)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        images[part] = _draw(
            {k: v[part] for k, v in factors.items()}, {k: v[part] for k, v in extra.items()}, kind[part], size
        )
    factors["anomaly_kind"] = kind
    return images, (kind >= 0).astype(np.int64), factors


def _check_arguments(n: object, size: object, anomaly_fraction: object) -> None:
    """Reject bad arguments early, naming the argument, instead of failing deep in numpy."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    if (isinstance(anomaly_fraction, bool) or not isinstance(anomaly_fraction, numbers.Real)
            or not 0.0 <= float(anomaly_fraction) <= 1.0):
        raise ValueError(f"anomaly_fraction must be a number in [0, 1], got {anomaly_fraction!r}")


# --- drawing ---------------------------------------------------------------------------------------


def _per_image(values: np.ndarray) -> np.ndarray:
    """(B,) -> (B, 1, 1): a per-image scalar that broadcasts against a (B, H, W) field."""
    return values.astype(np.float32, copy=False)[:, None, None]


def _colour(rgb: np.ndarray) -> np.ndarray:
    """(B, 3) or (3,) -> (3, B or 1, 1, 1), broadcastable against the channel-first canvas."""
    return np.asarray(rgb, np.float32).reshape(-1, 3).T[:, :, None, None]


def _ellipse(dx: np.ndarray, dy: np.ndarray, rx: np.ndarray, ry: np.ndarray) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (exact for circles, close enough here)."""
    radius = np.sqrt(np.square(dx / rx) + np.square(dy / ry))
    return (radius - 1.0) * np.minimum(rx, ry)


def _box(dx: np.ndarray, dy: np.ndarray, hw: np.ndarray, hh: np.ndarray) -> np.ndarray:
    """Signed distance (exact on the sides, Chebyshev at the corners) to a box of half-sizes hw, hh."""
    return np.maximum(np.abs(dx) - hw, np.abs(dy) - hh)


def _smoothstep(edge0: float, edge1: float, t: np.ndarray) -> np.ndarray:
    """0 below edge0, 1 above edge1, a smooth S-curve between: blends the hairline without a kink."""
    u = np.clip((t - edge0) / (edge1 - edge0), 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


class _Canvas:
    """A chunk of float RGB images in [0, 1], stored channel first (3, B, H, W) so that compositing a
    (B, H, W) coverage field is three contiguous plane operations, which is where the time goes."""

    def __init__(self, background: np.ndarray, grid: np.ndarray) -> None:
        self.rgb = background
        self.grid = grid
        self.per_unit = np.float32(len(grid) / 2)  # pixels per normalised unit: the anti-aliasing ramp

    def rows(self, top: np.ndarray | float, bottom: np.ndarray | float) -> tuple[slice, np.ndarray]:
        """The pixel rows that any image of the chunk may touch between ``top`` and ``bottom``, and
        their y coordinates (1, rows, 1). Small parts are only composited there, which makes drawing
        several times faster; the two-pixel margin keeps every non-zero coverage value inside."""
        margin = 2.0 / self.per_unit
        lo = np.searchsorted(self.grid, float(np.min(top)) - margin)
        hi = np.searchsorted(self.grid, float(np.max(bottom)) + margin)
        return slice(lo, hi), self.grid[None, lo:hi, None]

    def coverage(self, distance: np.ndarray) -> np.ndarray:
        """Signed distance (negative inside) -> coverage in [0, 1], a ramp one pixel wide."""
        alpha = 0.5 - distance * self.per_unit
        return np.clip(alpha, 0.0, 1.0, out=alpha)

    def paint(self, rows: slice, distance: np.ndarray, colour: np.ndarray,
              opacity: np.ndarray | None = None) -> None:
        """Composite a shape of one colour per image ("over") onto the given rows."""
        alpha = self.coverage(distance)
        if opacity is not None:
            alpha *= opacity
        target = self.rgb[:, :, rows]
        change = colour - target
        change *= alpha
        target += change


def _draw(f: dict[str, np.ndarray], extra: dict[str, np.ndarray], kind: np.ndarray, size: int) -> np.ndarray:
    """Render one chunk of faces from their factors; returns uint8 (B, size, size, 3)."""
    b = len(kind)
    grid = (np.arange(size, dtype=np.float32) + 0.5) * np.float32(2 / size) - 1
    x, y = grid[None, None, :], grid[None, :, None]

    # Background: a tinted grey, a little lighter at the top.
    level = 0.12 + 0.80 * _per_image(f["background_tone"])
    background = _colour(_BACKGROUND_TINT) * (level * (1.08 - 0.08 * (y + 1)))
    canvas = _Canvas(np.broadcast_to(background, (3, b, size, size)).copy(), grid)

    # Geometry, in normalised units. The ellipse moves with the turn; the features move further,
    # which reads as the face turning rather than sliding.
    scale = _per_image(0.80 + 0.30 * f["head_size"])
    turn = _per_image(f["head_turn"])
    head_x, head_y = 0.07 * turn, np.float32(0.02)
    face_x = head_x + 0.12 * turn * scale
    head_rx, head_ry = 0.48 * scale, 0.60 * scale
    skin = _colour(_LIGHT_SKIN + f["skin_tone"][:, None] * (_DARK_SKIN - _LIGHT_SKIN))
    hair = _colour(np.stack([np.interp(f["hair_colour"], _HAIR_STOPS, _HAIR_COLOURS[:, c]) for c in range(3)],
                            axis=1))

    # Shoulders and neck, then the head.
    rows, y = canvas.rows(1.05 - 0.30 * scale, 1.0)
    canvas.paint(rows, _ellipse(x - head_x, y - 1.05, 0.75 * scale, 0.30 * scale), _colour(_SHIRT))
    neck_y, neck_hh = head_y + 0.6 * head_ry, 0.6 * head_ry
    rows, y = canvas.rows(neck_y - neck_hh, neck_y + neck_hh)
    canvas.paint(rows, _box(x - head_x, y - neck_y, 0.17 * scale, neck_hh), skin * 0.85)
    rows, y = canvas.rows(head_y - head_ry, head_y + head_ry)
    canvas.paint(rows, _ellipse(x - head_x, y - head_y, head_rx, head_ry), skin)

    # Hair: an ellipse larger than the head, kept above a hairline that is high over the forehead and
    # drops down the sides; volume widens the ellipse and lowers the sides.
    volume = _per_image(f["hair_volume"])
    hair_rx = head_rx * (1.04 + 0.26 * volume)
    hair_ry = head_ry * (1.02 + 0.16 * volume)
    hair_y = head_y - 0.10 * volume * scale
    fringe = head_y - 0.50 * head_ry
    sides = head_y + (-0.15 + 0.85 * volume) * head_ry
    side_share = _smoothstep(0.45, 0.80, np.abs(x - head_x) / head_rx)
    hairline = fringe + (sides - fringe) * side_share
    rows, y = canvas.rows(hair_y - hair_ry, np.minimum(hair_y + hair_ry, sides))
    canvas.paint(rows, np.maximum(_ellipse(x - head_x, y - hair_y, hair_rx, hair_ry), y - hairline), hair)

    # Eyes, mirrored about the face centre line so one field draws both; "no_eyes" leaves skin.
    eye_y = head_y - 0.08 * scale
    eye_spacing = (0.11 + 0.16 * _per_image(f["eye_spacing"])) * scale
    eye_dx = np.abs(x - face_x) - eye_spacing
    eye_r = (0.08 + 0.06 * _per_image(f["eye_size"])) * scale
    has_eyes = _per_image((kind != ANOMALY_KINDS.index("no_eyes")).astype(np.float32))
    rows, y = canvas.rows(eye_y - 0.8 * eye_r, eye_y + 0.8 * eye_r)
    canvas.paint(rows, _ellipse(eye_dx, y - eye_y, eye_r, 0.8 * eye_r), _colour(_EYE_WHITE), has_eyes)
    pupil_dx = np.abs(x - face_x - 0.3 * turn * eye_r) - eye_spacing  # both pupils look towards the turn
    canvas.paint(rows, _ellipse(pupil_dx, y - eye_y, 0.55 * eye_r, 0.6 * eye_r), _colour(_PUPIL), has_eyes)
    brow_y, brow_hh = eye_y - 0.8 * eye_r - 0.07 * scale, 0.022 * scale
    rows, y = canvas.rows(brow_y - brow_hh, brow_y + brow_hh)
    canvas.paint(rows, _box(eye_dx, y - brow_y, 0.9 * eye_r, brow_hh), hair)

    # Nose: a soft darker patch; mouth: a band around a parabola whose corners rise with the smile.
    nose_y, nose_ry = head_y + 0.13 * scale, 0.08 * scale
    rows, y = canvas.rows(nose_y - nose_ry, nose_y + nose_ry)
    canvas.paint(rows, _ellipse(x - face_x, y - nose_y, 0.045 * scale, nose_ry), skin * 0.72, np.float32(0.8))
    mouth_dx, mouth_hw, mouth_hh = x - face_x, 0.20 * scale, 0.032 * scale
    mouth_y = head_y + 0.33 * scale
    sag = 0.13 * _per_image(f["mouth_curve"]) * scale  # centre below the corners by this much
    rows, y = canvas.rows(mouth_y - 0.5 * np.abs(sag) - mouth_hh, mouth_y + 0.5 * np.abs(sag) + mouth_hh)
    centre_line = mouth_y + sag * (0.5 - np.square(mouth_dx / mouth_hw))
    band = np.maximum(np.abs(y - centre_line) - mouth_hh, np.abs(mouth_dx) - mouth_hw)
    canvas.paint(rows, band, _colour(_MOUTH))

    # Lighting: a multiplicative left-right gradient over the whole picture.
    canvas.rgb *= 1.0 + 0.40 * _per_image(f["light_direction"]) * x

    _apply_anomalies(canvas, extra, kind, face_x, head_y, scale)
    rgb = canvas.rgb
    rgb *= 255.0
    rgb += 0.5
    np.clip(rgb, 0.0, 255.0, out=rgb)
    return rgb.astype(np.uint8).transpose(1, 2, 3, 0)


def _apply_anomalies(canvas: _Canvas, extra: dict[str, np.ndarray], kind: np.ndarray,
                     face_x: np.ndarray, head_y: np.float32, scale: np.ndarray) -> None:
    """Damage the defective images in place ("no_eyes" is handled while drawing)."""
    rgb, grid = canvas.rgb, canvas.grid

    # Smeared: a one-sided box filter a third of the image long drags the face along one axis.
    smeared = kind == ANOMALY_KINDS.index("smeared")
    for axis in (2, 3):
        chosen = np.flatnonzero(smeared & ((extra["smear_axis"] < 0.5) == (axis == 2)))
        if chosen.size:
            rgb[:, chosen] = _smear(rgb[:, chosen], axis, max(2, len(grid) // 3))

    # Wrong colours: swap channels so skin turns green or blue.
    wrong = kind == ANOMALY_KINDS.index("wrong_colours")
    for which, order in enumerate(_PERMUTATIONS):
        chosen = np.flatnonzero(wrong & ((extra["permutation"] < 0.5) == (which == 0)))
        if chosen.size:
            rgb[:, chosen] = rgb[:, chosen][list(order)]

    # Occluded: a solid rectangle of a random colour over a large part of the face.
    chosen = np.flatnonzero(kind == ANOMALY_KINDS.index("occluded"))
    if chosen.size:
        s = scale[chosen]
        centre_x = face_x[chosen] + (_per_image(extra["occ_x"][chosen]) - 0.5) * 0.30 * s
        centre_y = head_y + (_per_image(extra["occ_y"][chosen]) - 0.5) * 0.50 * s
        half_w = (0.28 + 0.17 * _per_image(extra["occ_w"][chosen])) * s
        half_h = (0.25 + 0.17 * _per_image(extra["occ_h"][chosen])) * s
        colour = _colour(np.stack([extra[k][chosen] for k in ("occ_r", "occ_g", "occ_b")], axis=1))
        alpha = canvas.coverage(_box(grid[None, None, :] - centre_x, grid[None, :, None] - centre_y,
                                     half_w, half_h))
        part = rgb[:, chosen]
        part += alpha * (colour - part)
        rgb[:, chosen] = part


def _smear(rgb: np.ndarray, axis: int, length: int) -> np.ndarray:
    """Mean of the ``length`` pixels up to and including each pixel along ``axis`` (edge-padded)."""
    pad = [(0, 0)] * rgb.ndim
    pad[axis] = (length, 0)
    total = np.cumsum(np.pad(rgb, pad, mode="edge"), axis=axis, dtype=np.float32)
    upper = np.take(total, np.arange(length, total.shape[axis]), axis=axis)
    lower = np.take(total, np.arange(0, total.shape[axis] - length), axis=axis)
    return (upper - lower) / np.float32(length)
