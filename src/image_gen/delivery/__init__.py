"""Channel renditions of a run's final asset: smart crop, resample, encode within a byte budget, provenance, QA.

Layer: above ``pipeline/`` (its outpaint call goes through the pipeline's ``CallMaker``) and below ``api.py``; it
uses ``qa/``, ``imaging/``, ``store/`` and the channel presets of ``image_gen.channels``. Importing this package is
cheap: Pillow, numpy, OpenCV, OCR and c2pa load inside the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from image_gen.delivery.deliver import Deliverer, DeliveryResult, RenditionResult, attach

__all__ = ["Deliverer", "DeliveryResult", "RenditionResult", "attach"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from image_gen.delivery import deliver

        return getattr(deliver, name)
    raise AttributeError(name)
