"""Key pairs and signatures for evidence, as the WACZ signing specification's anonymous form.

The WACZ Signing and Verification recommendation (webrecorder/specs, wacz-auth) signs the
string ``sha256:<hex>`` of ``datapackage.json`` with ECDSA and puts the base64 signature and
the base64 SubjectPublicKeyInfo of the public key in ``datapackage-digest.json``. ReplayWeb.page
checks such a signature with WebCrypto: an ECDSA **P-384** key, SHA-256, and the signature as
raw ``r || s`` (96 bytes), not DER; this module writes exactly that, so the viewer shows the
package as signed. The same key signs the evidence bag's manifest.

An anonymous signature proves that whoever holds the private key signed these bytes; who that
is must be known another way: the key's fingerprint (SHA-256 of its SubjectPublicKeyInfo) is
what a reader compares with one the signer published.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from crawler.core.errors import NotFound, OutputError
from crawler.evidence import DEFAULT_KEY

CURVE = ec.SECP384R1()
_SIZE = 48  # bytes of r and of s on P-384


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key loaded for signing, with its public half as the package carries it."""

    private: ec.EllipticCurvePrivateKey
    path: Path

    @property
    def public_der(self) -> bytes:
        return public_der(self.private.public_key())

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_der)

    def signed_data(self, message: str, created: str, software: str) -> dict[str, str]:
        """Return the ``signedData`` of the WACZ signing specification (anonymous form) for
        ``message``: what the WACZ's digest file and the bag's manifest signature hold."""
        return {"hash": message, "signature": self.sign(message),
                "publicKey": base64.b64encode(self.public_der).decode(), "created": created,
                "software": software}

    def sign(self, message: str) -> str:
        """Return the base64 raw ``r || s`` ECDSA-SHA256 signature of a UTF-8 string."""
        der = self.private.sign(message.encode("utf-8"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return base64.b64encode(r.to_bytes(_SIZE, "big") + s.to_bytes(_SIZE, "big")).decode()


def public_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(spki_der: bytes) -> str:
    """Return a public key's fingerprint: SHA-256 of its DER SubjectPublicKeyInfo, in hex
    pairs (``ab:cd:…``), the form people read aloud and compare."""
    digest = hashlib.sha256(spki_der).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def generate(path: Path) -> SigningKey:
    """Create a P-384 key pair: the private key at ``path`` (PEM, readable by its owner only)
    and the public key beside it (``.pub.pem``). Refuses to overwrite a key."""
    public_path = public_path_of(path)
    for existing in (path, public_path):
        if existing.exists():
            raise OutputError(f"{existing}: a key is already there; it is not overwritten "
                              "(a new key would make earlier packages' fingerprint differ)")
    path.parent.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(CURVE)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path.write_bytes(public_pem(private.public_key()))
    return SigningKey(private, path)


def public_path_of(path: Path) -> Path:
    name = path.name.removesuffix(".pem")
    return path.with_name(f"{name}.pub.pem")


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def load(path: Path) -> SigningKey:
    """Load a private key made by ``generate`` (an error names the file and why not)."""
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise NotFound(f"{path}: no signing key there; create one with "
                          "`crawler evidence keygen`") from None
    except (ValueError, TypeError, OSError) as exc:
        raise NotFound(f"{path}: not a readable unencrypted PEM private key ({exc})") from exc
    if not isinstance(private, ec.EllipticCurvePrivateKey) or \
            private.curve.name != CURVE.name:
        raise NotFound(f"{path}: the key must be ECDSA P-384 (as `crawler evidence keygen` "
                          "makes): ReplayWeb.page verifies WACZ signatures with that curve only")
    return SigningKey(private, path)


def default_key() -> SigningKey | None:
    """Return the key at ``DEFAULT_KEY`` if there is one (an error if it is unusable)."""
    return load(DEFAULT_KEY) if DEFAULT_KEY.is_file() else None


def verify(message: str, signature_b64: str, spki_b64: str) -> bool:
    """Return True if ``signature_b64`` (raw ``r || s`` or DER) signs ``message`` under the
    base64 SubjectPublicKeyInfo ``spki_b64``."""
    try:
        key = serialization.load_der_public_key(base64.b64decode(spki_b64, validate=True))
        raw = base64.b64decode(signature_b64, validate=True)
    except (ValueError, TypeError):
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    size = (key.curve.key_size + 7) // 8
    der = raw
    if len(raw) == 2 * size:
        der = encode_dss_signature(int.from_bytes(raw[:size], "big"),
                                   int.from_bytes(raw[size:], "big"))
    try:
        key.verify(der, message.encode("utf-8"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
