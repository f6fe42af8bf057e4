"""Fixtures of the support tests: a throwaway SQLite database, small knowledge files, a PDF writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigc_studio.store.db import Database

FAQ_CSV = """question,answer,intent,tags
How do I reset my PIN?,"Go to an ATM, choose PIN services and pick a new PIN.",change_pin,cards;pin
My card has not arrived,"Cards arrive within 5 working days; after that, order a new one in the app.",card_arrival,cards
Is topping up by bank transfer free?,Yes: a top-up by bank transfer costs nothing on our side.,top_up_by_bank_transfer_charge,top-up
"""


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'kb.db'}")
    yield database
    database.close()


@pytest.fixture
def faq_csv(tmp_path: Path) -> Path:
    path = tmp_path / "faq.csv"
    path.write_text(FAQ_CSV, encoding="utf-8")
    return path


def make_pdf(path: Path, pages: list[str]) -> Path:
    """Write a minimal valid PDF (Helvetica text, one line per page) with a correct cross-reference table."""
    objects: list[bytes] = []
    page_ids = [3 + 2 * i for i in range(len(pages))]
    font_id = 3 + 2 * len(pages)
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{pid} 0 R" for pid in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    for pid, text in zip(page_ids, pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {pid + 1} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path
