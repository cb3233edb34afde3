"""MediaPipe face-mesh topology: landmark counts and the index groups of the 478-point mesh (468 + 10 iris points).

Plain tuples, no MediaPipe or torch import: the model (``modeling_emotalk.landmarks`` re-exports these names),
the face front-end and evaluation all read the mesh through these indices.
"""

from __future__ import annotations

NUM_LANDMARKS = 478

# Subject's right eye is on the image left of a frontal face.
RIGHT_EYE_UPPER = (246, 161, 160, 159, 158, 157, 173)
RIGHT_EYE_LOWER = (7, 163, 144, 145, 153, 154, 155)
LEFT_EYE_UPPER = (466, 388, 387, 386, 385, 384, 398)
LEFT_EYE_LOWER = (249, 390, 373, 374, 380, 381, 382)
RIGHT_EYE_CORNERS = (33, 133)  # outer, inner
LEFT_EYE_CORNERS = (263, 362)  # outer, inner
RIGHT_IRIS = (468, 469, 470, 471, 472)  # centre first
LEFT_IRIS = (473, 474, 475, 476, 477)
RIGHT_EYEBROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_EYEBROW = (336, 296, 334, 293, 300, 276, 283, 282, 295, 285)
RIGHT_EYEBROW_LOWER = RIGHT_EYEBROW[5:]  # the brow's lower contour
LEFT_EYEBROW_LOWER = LEFT_EYEBROW[5:]
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_CORNERS = (61, 291)
UPPER_LIP_CENTER_INNER = 13
LOWER_LIP_CENTER_INNER = 14
NOSE = (168, 6, 197, 195, 5, 4, 1, 2, 98, 327)
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
CHIN = 152
FOREHEAD = (10, 151, 9)
NOSE_TIP = (4, 5, 195)

LIPS = tuple(sorted(set(LIPS_OUTER_UPPER + LIPS_OUTER_LOWER + LIPS_INNER_UPPER + LIPS_INNER_LOWER)))
LOWER_LIP = tuple(sorted(set(LIPS_OUTER_LOWER + LIPS_INNER_LOWER) - set(MOUTH_CORNERS) - {78, 308}))
UPPER_LIP = tuple(sorted(set(LIPS_OUTER_UPPER + LIPS_INNER_UPPER) - set(MOUTH_CORNERS) - {78, 308}))
EYES = tuple(sorted(set(RIGHT_EYE_UPPER + RIGHT_EYE_LOWER + LEFT_EYE_UPPER + LEFT_EYE_LOWER)))
IRISES = RIGHT_IRIS + LEFT_IRIS
# Rigid points (do not move with expressions): eye corners, nose bridge and tip, forehead.
RIGID = (33, 133, 263, 362, 168, 6, 197, 195, 5, 4, 10, 151, 9)

# MediaPipe 478 -> iBUG 68 (dlib order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).
MEDIAPIPE_TO_IBUG68 = (
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)  # fmt: skip

# Landmark groups rasterized as separate heat-map channels by the generator's landmark encoder.
LANDMARK_GROUPS: dict[str, tuple[int, ...]] = {
    "face_oval": FACE_OVAL,
    "brows": RIGHT_EYEBROW + LEFT_EYEBROW,
    "eyes": EYES,
    "irises": IRISES,
    "nose": NOSE,
    "lips_outer": tuple(sorted(set(LIPS_OUTER_UPPER + LIPS_OUTER_LOWER))),
    "lips_inner": tuple(sorted(set(LIPS_INNER_UPPER + LIPS_INNER_LOWER))),
}

# Per eye (right, left): the upper and lower lid from corner to corner, and the lower contour of the brow above.
EYELID_CONTOURS = tuple(
    ((outer, *upper, inner), (outer, *lower, inner), brow)
    for (outer, inner), upper, lower, brow in (
        (RIGHT_EYE_CORNERS, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER, RIGHT_EYEBROW_LOWER),
        (LEFT_EYE_CORNERS, LEFT_EYE_UPPER, LEFT_EYE_LOWER, LEFT_EYEBROW_LOWER),
    )
)

# Derived groups used by evaluation.
EYE_OUTER_CORNERS = (RIGHT_EYE_CORNERS[0], LEFT_EYE_CORNERS[0])  # subject's right (image left), subject's left
LIPS_OUTER = LIPS_OUTER_UPPER + LIPS_OUTER_LOWER[1:-1]  # the outer lip contour: upper lip, then lower
