"""The phone inventory of stage 1's auxiliary phone target (``clip_phones.json``, ``--lambda_phone``).

39 ARPAbet phones without stress digits plus ``SIL`` (silences, noises, unknown labels), in a fixed order: a
phone's id is its index in :data:`PHONES`, and the training-only phone classifier has one output per phone.
"""

from __future__ import annotations

SILENCE = "SIL"
PHONES: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY", "JH", "K",
    "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", SILENCE, "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
PHONE_IDS = {phone: i for i, phone in enumerate(PHONES)}
ALIASES = {"AX": "AH", "AXR": "ER", "IX": "IH", "UX": "UW", "EL": "L", "EM": "M", "EN": "N", "DX": "D", "Q": "T"}


def normalize_phone(label: str) -> str:
    """ARPAbet label without stress digits, upper case; silences, noises and unknown labels become ``SIL``."""
    label = "".join(ch for ch in str(label).upper() if not ch.isdigit()).strip()
    label = ALIASES.get(label, label)
    return label if label in PHONE_IDS else SILENCE


__all__ = ["ALIASES", "PHONES", "PHONE_IDS", "SILENCE", "normalize_phone"]
