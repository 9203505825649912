"""Class-name aliases, so datasets from other sources map onto maskwatch's three classes."""

from __future__ import annotations

from maskwatch.errors import MaskwatchError
from maskwatch.types import CLASS_NAMES

_ALIASES = {
    "with_mask": ("with_mask", "mask", "masked", "face_mask", "withmask", "mask_on"),
    "without_mask": ("without_mask", "no_mask", "nomask", "unmasked", "no_face_mask", "withoutmask", "mask_off"),
    "mask_weared_incorrect": (
        "mask_weared_incorrect",
        "mask_worn_incorrectly",
        "mask_worn_incorrect",
        "incorrect_mask",
        "incorrectly_worn_mask",
        "mask_incorrect",
        "incorrect",
        "improper_mask",
    ),
}
_LOOKUP = {alias: CLASS_NAMES.index(name) for name, aliases in _ALIASES.items() for alias in aliases}


def normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def class_id_of(name: str, where: str = "") -> int:
    """Map a dataset's class name (``with_mask``, ``no-mask``, ``Mask worn incorrectly`` …) to a class id."""
    key = normalise(name)
    if key not in _LOOKUP:
        raise MaskwatchError(
            f"{where + ': ' if where else ''}unknown class {name!r}; expected one of {', '.join(CLASS_NAMES)} "
            "(or a common alias such as mask / no_mask / incorrect_mask)"
        )
    return _LOOKUP[key]
