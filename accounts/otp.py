"""QR codes for authenticator enrolment, rendered on the server (no external service, no script)."""

from __future__ import annotations

import qrcode
import qrcode.image.svg


def qr_svg(data: str) -> str:
    """An inline SVG of ``data`` as a QR code (the otpauth URI never leaves this server)."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    svg: str = image.to_string(encoding="unicode")
    return svg
