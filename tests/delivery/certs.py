"""A throwaway C2PA signing chain made with ``cryptography``: a root CA and a leaf it issued.

What c2pa-rs (0.91, through c2pa-python 0.38) accepts, found by trying: a signing certificate with the
digitalSignature key usage, an extended key usage (emailProtection here) and an authority key identifier; without
the extended key usage or the authority key identifier it refuses to sign ("the certificate is invalid"). A
self-signed certificate is accepted when it has those; a chain (leaf first, then its CA) is what a user would hold.
Readers report such a manifest ``Valid`` (signature and hashes check), and ``Trusted`` only with the root among
their trust anchors.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Chain:
    cert: Path
    key: Path
    root_pem: bytes
    no_aki_cert: Path
    """The leaf without its authority key identifier: refused by c2pa-rs."""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "image-gen tests")])


def _usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def make_chain(folder: Path) -> Chain:
    now = datetime.datetime.now(datetime.UTC)
    valid = {"not_valid_before": now - datetime.timedelta(days=1), "not_valid_after": now + datetime.timedelta(days=7)}
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder(**valid).subject_name(_name("image-gen test root")).issuer_name(
        _name("image-gen test root")).public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())

    def leaf(aki: bool = True) -> x509.Certificate:
        b = (x509.CertificateBuilder(**valid).subject_name(_name("image-gen test signer")).issuer_name(root.subject)
             .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(_usage(sign=True, ca=False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False))
        if aki:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                                critical=False)
        return b.sign(root_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    cert = folder / "signer-chain.pem"
    cert.write_bytes(leaf().public_bytes(pem) + root.public_bytes(pem))
    key = folder / "signer-key.pem"
    key.write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    no_aki = folder / "no-aki-chain.pem"
    no_aki.write_bytes(leaf(aki=False).public_bytes(pem) + root.public_bytes(pem))
    return Chain(cert, key, root.public_bytes(pem), no_aki)
