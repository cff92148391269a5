"""QR codes of ticket codes, with segno: PNG for emails and PDFs, SVG for web pages.

A code (``boxoffice.domain.tickets``) is 164 base32 characters, which QR stores in its
alphanumeric mode (5.5 bits a character). Error correction M (15 % of the symbol can be
lost) gives version 7, 45 x 45 modules: the level most ticketing uses for codes shown on a
phone or printed. Q (25 %) would need version 9 (53 x 53), a denser code for the same
print size; L (7 %) version 6 (41 x 41), too little margin for a scratched screen.
segno raises the level for free when the data fits at a higher one in the same version.
"""

from __future__ import annotations

import io

import segno

ERROR_LEVEL = "M"
# A 4-module quiet zone is what the QR standard asks for; scanners at the door need it.
BORDER = 4


def ticket_qr(code: str) -> segno.QRCode:
    """The QR code of a ticket code, error correction at least M. Upper-case, as the
    alphanumeric mode has no lower case (and codes read the same either way)."""
    return segno.make_qr(code.upper(), error=ERROR_LEVEL, mode="alphanumeric")


def qr_size(code: str) -> tuple[int, int]:
    """The QR version a code needs and the modules on a side, quiet zone excluded."""
    qr = ticket_qr(code)
    width, _ = qr.symbol_size(border=0)
    return int(qr.version), int(width)


def qr_png(code: str, *, scale: int = 6) -> bytes:
    """A PNG of the code, ``scale`` pixels a module (6: 318 x 318 pixels for version 7)."""
    out = io.BytesIO()
    ticket_qr(code).save(out, kind="png", scale=scale, border=BORDER)
    return out.getvalue()


def qr_svg(code: str, *, title: str = "Ticket") -> str:
    """An SVG of the code, one user unit a module and no fixed size, so that it scales
    with its container; ``title`` is what screen readers say."""
    out = io.BytesIO()
    ticket_qr(code).save(out, kind="svg", border=BORDER, xmldecl=False, omitsize=True, title=title)
    return out.getvalue().decode("utf-8")
