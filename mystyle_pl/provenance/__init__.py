"""Every image the product writes says what it is: Content Credentials (C2PA), IPTC XMP and an
invisible watermark, and :func:`verify` reads them back.

One job per module: :mod:`.watermark` (the pixels), :mod:`.xmp` (IPTC DigitalSourceType),
:mod:`.manifest` (C2PA, through ``c2pa-python``), :mod:`.keys` (who signs), :mod:`.label`
(encode + XMP + sign + write), :mod:`.verify` (the report on a file).
"""

from __future__ import annotations

from .verify import VerifyReport, verify, verify_paths

__all__ = ["VerifyReport", "verify", "verify_paths"]
