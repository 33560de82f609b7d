"""IPTC ``DigitalSourceType`` in a file's XMP, for the many tools that read XMP but not C2PA.

PNG: an ``iTXt`` chunk with the keyword ``XML:com.adobe.xmp`` (the XMP specification, part 3);
JPEG: the APP1 XMP segment (Pillow's ``xmp=``). The values are the IPTC NewsCodes URIs
(https://cv.iptc.org/newscodes/digitalsourcetype/).

>>> xml = xmp_packet(TRAINED)
>>> source_type_of(xml) == TRAINED
True
"""

from __future__ import annotations

import re

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED = IPTC + "trainedAlgorithmicMedia"  # a new picture made by a trained model (samples)
COMPOSITE = IPTC + "compositeWithTrainedAlgorithmicMedia"  # a photo with parts made by a trained model (restorations, edits)
PNG_KEY = "XML:com.adobe.xmp"

_PACKET = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    Iptc4xmpExt:DigitalSourceType="{source_type}"
    xmp:CreatorTool="{tool}"/>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def xmp_packet(source_type: str, tool: str = "mystyle-pl") -> str:
    """The XMP packet (a string) declaring ``source_type`` (an IPTC digital source type URI)."""
    return _PACKET.format(source_type=source_type, tool=tool)


def source_type_of(xmp: str | bytes | None) -> str | None:
    """The ``Iptc4xmpExt:DigitalSourceType`` of an XMP packet (attribute or element form), or None."""
    if not xmp:
        return None
    text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else xmp
    m = re.search(r'Iptc4xmpExt:DigitalSourceType\s*=\s*"([^"]*)"', text) or re.search(
        r"<Iptc4xmpExt:DigitalSourceType[^>]*>([^<]*)<", text
    )
    return m.group(1).strip() if m else None


def read_xmp(image) -> str | None:
    """The XMP packet of an open PIL image (PNG iTXt or JPEG APP1), or None."""
    xmp = image.info.get(PNG_KEY) or image.info.get("xmp")
    if isinstance(xmp, bytes):
        xmp = xmp.decode("utf-8", "replace")
    return xmp or None


__all__ = ["COMPOSITE", "IPTC", "PNG_KEY", "TRAINED", "read_xmp", "source_type_of", "xmp_packet"]
