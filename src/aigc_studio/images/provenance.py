"""Provenance of generated images: a generation record inside every PNG, and optionally a signed C2PA manifest.

1. **The record** (:class:`ImageProvenance`): generator, model name, model type, weights sha256, label, seed,
   parameters, time, and the sha256 of the pixels. It is stored as JSON in an ``iTXt`` chunk named
   ``aigc:provenance``; :func:`verify_png` recomputes the pixel hash, so an edited image (any pixel changed)
   fails verification, while re-saving the same pixels (other compression, stripped metadata re-added) passes.
2. **C2PA** (the Coalition for Content Provenance and Authenticity manifest, via the optional
   ``c2pa-python`` package): a ``c2pa.created`` action with the IPTC digital source type
   ``trainedAlgorithmicMedia`` and our record as an assertion, signed with ES256 by a certificate made
   locally on first use (a local CA and a signing certificate under ``var/c2pa/``, created with
   ``cryptography``). Readers validate the signature and the hard binding of the bytes; the certificate is
   not on a public trust list, so the state is "Valid", not "Trusted", which is all a self-hosted
   installation can offer without buying a certificate.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image, PngImagePlugin, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aigc_studio import __version__
from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write, atomic_write_with
from aigc_studio.settings import load_settings

GENERATOR = f"aigc-studio/{__version__}"
PROVENANCE_KEY = "aigc:provenance"
# IPTC's term for media made by a trained model (what C2PA asks generators to declare).
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


class ImageProvenance(BaseModel):
    """What produced one image; the JSON inside its PNG."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    generator: str = GENERATOR
    model: str = Field(description="the model's name or directory as given")
    model_type: str
    model_sha256: str = Field(description="sha256 of the model's model.safetensors")
    label: str
    label_index: int
    seed: int
    index: int = Field(0, description="position of the image in its batch (its noise is row `index` of the seed's draw)")
    mode: Literal["sample", "interpolate", "variation"] = "sample"
    parameters: dict[str, Any] = Field(default_factory=dict)
    created: str = Field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    pixels_sha256: str = ""


def pixels_sha256(image: Image.Image) -> str:
    """sha256 over the image's mode, size and raw pixels: independent of PNG compression and metadata."""
    digest = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def png_bytes(image: Image.Image, record: ImageProvenance, *, c2pa_signer: C2paSigner | None = None) -> bytes:
    """The PNG of ``image`` carrying ``record`` (its ``pixels_sha256`` filled in), C2PA-signed when a signer is given."""
    record = record.model_copy(update={"pixels_sha256": pixels_sha256(image)})
    info = PngImagePlugin.PngInfo()
    info.add_itxt(PROVENANCE_KEY, record.model_dump_json())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    data = buffer.getvalue()
    return c2pa_signer.sign_png(data, record) if c2pa_signer is not None else data


def write_png(path: str | Path, image: Image.Image, record: ImageProvenance, *, c2pa_signer: C2paSigner | None = None) -> Path:
    """Atomically write :func:`png_bytes` to ``path``."""
    return atomic_write(path, png_bytes(image, record, c2pa_signer=c2pa_signer))


@dataclass
class VerifyResult:
    """What :func:`verify_png` found.

    Attributes:
        status: ``"verified"`` (record present, pixels unchanged, C2PA valid if present), ``"modified"``
            (the pixels or the C2PA binding no longer match), or ``"missing"`` (no record: not made here, or stripped).
        message: one line for people.
        record: the record read, if any.
        c2pa_state: the C2PA validation state (``"Valid"``, ``"Trusted"``, ``"Invalid"``), None when absent
            or when ``c2pa-python`` is not installed.
    """

    status: Literal["verified", "modified", "missing"]
    message: str
    record: ImageProvenance | None = None
    c2pa_state: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "verified"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "ok": self.ok, "message": self.message,
                "record": self.record.model_dump() if self.record else None, "c2pa_state": self.c2pa_state}


def verify_png(source: str | Path | bytes) -> VerifyResult:
    """Read the generation record of a PNG (a path or its bytes) and check the pixels still match it.

    Raises:
        AigcError: the file is missing or not an image.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise AigcError(f"file not found: {path}; check the path", param="file")
        data, name = path.read_bytes(), str(path)
    else:
        data, name = source, "the image"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            text = image.info.get(PROVENANCE_KEY)
            digest = pixels_sha256(image)
            fmt = image.format
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise AigcError(f"{name} is not a readable image ({error}); pass a PNG written by `aigc sketch`", param="file") from None
    c2pa_state = _c2pa_state(data) if fmt == "PNG" else None
    if text is None:
        return VerifyResult("missing", f"{name} carries no AIGC Studio generation record (not made here, or its metadata "
                                       "was stripped)", None, c2pa_state)
    try:
        record = ImageProvenance.model_validate_json(text)
    except ValidationError:
        return VerifyResult("modified", f"{name}: the generation record is damaged or was edited", None, c2pa_state)
    if record.pixels_sha256 != digest:
        return VerifyResult("modified", f"{name}: the pixels were changed after generation (hash mismatch)", record, c2pa_state)
    if c2pa_state is not None and c2pa_state not in ("Valid", "Trusted"):
        return VerifyResult("modified", f"{name}: the C2PA manifest does not validate ({c2pa_state})", record, c2pa_state)
    signed = f", C2PA {c2pa_state}" if c2pa_state else ""
    return VerifyResult("verified", f"{name}: generated by {record.generator} with {record.model} "
                                    f"({record.label}, seed {record.seed}) at {record.created}{signed}", record, c2pa_state)


# ---- C2PA -------------------------------------------------------------------------------------------------


def c2pa_available() -> bool:
    """Whether the optional ``c2pa-python`` package is installed (``pip install 'aigc-studio[c2pa]'``)."""
    try:
        import c2pa  # noqa: F401
    except ImportError:
        return False
    return True


def _c2pa_state(data: bytes) -> str | None:
    if not c2pa_available():
        return None
    import c2pa

    try:
        reader = c2pa.Reader("image/png", io.BytesIO(data))
    except c2pa.C2paError:
        return None  # no manifest (ManifestNotFound) or none we can parse: report as absent
    try:
        return reader.get_validation_state()
    finally:
        reader.close()


class C2paSigner:
    """Signs PNGs with a C2PA manifest using the local certificate in ``directory`` (created on first use).

    Args:
        directory: where ``ca.pem``, ``signer.pem`` (chain) and ``signer.key`` (owner-only) live; default: the
            ``c2pa_directory`` setting (``var/c2pa``, or ``AIGC_C2PA_DIRECTORY``).

    Raises:
        AigcError: ``c2pa-python`` is not installed.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        if not c2pa_available():
            raise AigcError("C2PA signing needs the optional c2pa-python package: pip install 'aigc-studio[c2pa]'",
                            param="c2pa")
        self.directory = Path(directory) if directory is not None else load_settings().c2pa_directory
        self.chain_pem, self.key_pem = _local_certificate(self.directory)

    def sign_png(self, data: bytes, record: ImageProvenance) -> bytes:
        """``data`` (a PNG) with an embedded, signed C2PA manifest that states its generation."""
        import c2pa

        manifest = {
            "claim_generator_info": [{"name": "aigc-studio", "version": __version__}],
            "title": f"{record.label} sketch (seed {record.seed})",
            "format": "image/png",
            "assertions": [
                {"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                     "softwareAgent": {"name": record.generator}},
                ]}},
                {"label": "org.aigc-studio.generation", "data": record.model_dump()},
            ],
        }
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, self.chain_pem, self.key_pem, None))
        builder = c2pa.Builder(json.dumps(manifest))
        out = io.BytesIO()
        try:
            builder.sign(signer, "image/png", io.BytesIO(data), out)
        finally:
            builder.close()
            signer.close()
        return out.getvalue()


def _local_certificate(directory: Path) -> tuple[bytes, bytes]:
    """The signing chain (signer + CA, PEM) and key (PEM), made on first use: an ES256 CA and an end-entity
    certificate with the key usages C2PA requires (digitalSignature; emailProtection extended usage)."""
    chain_path, key_path = directory / "signer.pem", directory / "signer.key"
    if chain_path.is_file() and key_path.is_file():
        return chain_path.read_bytes(), key_path.read_bytes()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AIGC Studio (self-hosted)")])

    def usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                             encipher_only=False, decipher_only=False)

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("AIGC Studio local CA")).issuer_name(name("AIGC Studio local CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage(sign=False, ca=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("AIGC Studio signer")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(sign=True, ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    chain = cert.public_bytes(pem) + ca.public_bytes(pem)
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    atomic_write(directory / "ca.pem", ca.public_bytes(pem))
    atomic_write(chain_path, chain)
    atomic_write_with(key_path, lambda tmp: tmp.write_bytes(key_pem), mode=0o600)  # the private key: owner-only
    return chain, key_pem
