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


# --- the assistant (items 4-6) -------------------------------------------------------------------------------
# A small bank knowledge base: seven intents, two pairs of them close (card arrival / delivery estimate,
# transfer into the account / transfer fee) so that a vague message is ambiguous between them.
ASSISTANT_FAQ = """id,question,answer,intent,tags
card_arrival,My new card hasn't arrived yet. Where is it?,"Cards usually arrive 3-5 working days after posting. Follow the delivery under Card > Track delivery in the app. After 10 working days we send a replacement free of charge.",card_arrival,cards;delivery
card_delivery_estimate,How long does card delivery take?,"Standard card delivery takes 3-5 working days; express delivery takes 1 working day for a fee of EUR 5.",card_delivery_estimate,cards;delivery
change_pin,How do I change my PIN?,"Go to any ATM, choose PIN services and pick a new 4-digit PIN. You can also view your PIN in the app under Card > Show PIN.",change_pin,cards;pin
transfer_into_account,How do I transfer money into my account?,"Send a bank transfer to your account number and sort code shown under Account > Details. Transfers from other banks arrive within one working day.",transfer_into_account,transfers
transfer_fee_charged,Why was I charged a fee for a transfer?,"Transfers in EUR within SEPA are free. International transfers cost 0.4% with a minimum of EUR 3, shown before you confirm.",transfer_fee_charged,transfers;fees
exchange_rate,What exchange rate do you use?,"We use the live interbank rate for exchanges in the app, shown before you confirm. On weekends a 0.5% markup applies.",exchange_rate,fx
lost_or_stolen_card,I lost my card. What should I do?,"Freeze the card at once in the app under Card > Freeze, then order a replacement. Frozen cards cannot be used by anyone.",lost_or_stolen_card,cards;security
"""


def assistant_settings(directory: Path, **support: object):
    """Settings on a database and index under ``directory`` (watermark key from the isolated installation)."""
    import os

    from aigc_studio.settings import Settings

    return Settings(
        database_url=f"sqlite:///{directory / 'aigc.db'}",
        vault_key_file=directory / "vault.key",
        server={"rate_limit_per_minute": 0},
        watermark={"key_file": os.environ.get("AIGC_WATERMARK__KEY_FILE", str(directory / "watermark.key"))},
        support={"index_dir": directory / "support" / "index", **support},
    )


def build_support_installation(directory: Path) -> Path:
    """A database with the small knowledge base, the demo customers and the knowledge-base router trained."""
    from aigc_studio.support import DEMO_DIR
    from aigc_studio.support.assistant import ensure_kb_router, kb_router_dir
    from aigc_studio.support.customers import load_customers
    from aigc_studio.support.kb import KnowledgeBase

    directory.mkdir(parents=True, exist_ok=True)
    faq = directory / "bank.csv"
    faq.write_text(ASSISTANT_FAQ, encoding="utf-8")
    settings = assistant_settings(directory)
    database = Database(settings.database_url)
    kb = KnowledgeBase(database, index_dir=settings.support.index_dir)
    kb.add_files([faq])
    ensure_kb_router(kb, kb_router_dir(settings.support.index_dir))
    load_customers(database, DEMO_DIR / "customers.json")
    database.close()
    return directory


@pytest.fixture(scope="session")
def support_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The installation built once per test session; tests copy it (see ``support_home``)."""
    return build_support_installation(tmp_path_factory.mktemp("support-template"))


@pytest.fixture
def support_home(support_template: Path, tmp_path: Path) -> Path:
    """A private copy of the installation (database, index, router), so a test's sessions and tickets are its own."""
    import shutil

    home = tmp_path / "support"
    shutil.copytree(support_template, home)
    return home


@pytest.fixture
def assistant(support_home: Path):
    """The assistant of ``support_home``: template replies, the knowledge-base router, governance with audit."""
    from aigc_studio.support.assistant import Assistant

    settings = assistant_settings(support_home)
    database = Database(settings.database_url)
    yield Assistant.from_settings(settings, database)
    database.close()
