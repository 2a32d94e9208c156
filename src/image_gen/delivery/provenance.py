"""Provenance written into every rendition: an XMP packet, the AUTOMATIC1111 parameters, and optionally a signed
C2PA manifest.

- XMP (every format; PNG as an ``iTXt`` ``XML:com.adobe.xmp`` chunk, JPEG/WebP/AVIF as Pillow writes it) carries
  IPTC ``Iptc4xmpExt:DigitalSourceType`` = ``http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia``,
  ``xmp:CreatorTool``, the prompt as ``dc:description`` and image-gen's own fields (run, channel, the models that
  touched the asset in order, whether it is simulated).
- A1111 ``parameters``: a PNG text chunk (where AUTOMATIC1111-style readers look), EXIF UserComment elsewhere.
- C2PA (``pip install image-gen[c2pa]``, config ``[provenance] c2pa_cert``/``c2pa_key``): a manifest signed with the
  user's certificate through ``c2pa-python``, whose ``c2pa.actions.v2`` assertion lists each model that touched the
  asset (``c2pa.created`` by the first, ``c2pa.edited`` by each after it, each with the IPTC digital source type)
  and image-gen's crop/resize, plus an ``org.image-gen.rendition`` assertion with the run, channel and models.
  c2pa-rs signs with a self-made certificate (even a self-signed one) only when it has the digitalSignature key
  usage, an extended key usage (emailProtection, or C2PA's own) and an authority key identifier; otherwise it says
  "the certificate is invalid". The PEM file lists the leaf first, then its CA(s). A reader reports such a manifest
  ``Valid`` (signature and hashes check) and ``Trusted`` only when its root is among the reader's trust anchors.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
XMP_NS = "urn:x-image-gen:xmp:1.0/"
C2PA_ASSERTION = "org.image-gen.rendition"


@dataclass
class ModelStep:
    """One model that touched the asset: the stage, the model id and what it did."""

    stage: str
    model: str
    operation: str

    def to_dict(self) -> dict[str, str]:
        return {"stage": self.stage, "model": self.model, "operation": self.operation}


@dataclass
class Provenance:
    run_id: str
    channel: str
    prompt: str
    models: list[ModelStep]
    simulated: bool
    generator: str = "image-gen"
    version: str = "0"
    edits: list[str] = field(default_factory=list)
    """What delivery did to the final asset (``cropped``, ``resized``, ``letterboxed``, ``outpainted``...)."""


def xmp_packet(p: Provenance) -> bytes:
    """The XMP packet (UTF-8) of a rendition."""
    models = "".join(f"<rdf:li>{escape(f'{m.stage}: {m.model} ({m.operation})')}</rdf:li>" for m in p.models)
    edits = "".join(f"<rdf:li>{escape(e)}</rdf:li>" for e in p.edits)
    attrs = {
        "Iptc4xmpExt:DigitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
        "xmp:CreatorTool": f"{p.generator} {p.version}",
        "imagegen:RunId": p.run_id,
        "imagegen:Channel": p.channel,
        "imagegen:Simulated": "True" if p.simulated else "False",
    }
    attr_text = "".join(f"\n    {k}={quoteattr(v)}" for k, v in attrs.items())
    text = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        '    xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        f'    xmlns:imagegen="{XMP_NS}"{attr_text}>\n'
        f'   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{escape(p.prompt)}</rdf:li></rdf:Alt>'
        '</dc:description>\n'
        f'   <imagegen:Models><rdf:Seq>{models}</rdf:Seq></imagegen:Models>\n'
        f'   <imagegen:Edits><rdf:Seq>{edits}</rdf:Seq></imagegen:Edits>\n'
        '  </rdf:Description>\n'
        ' </rdf:RDF>\n'
        '</x:xmpmeta>\n'
        '<?xpacket end="w"?>'
    )
    return text.encode("utf-8")


def read_xmp(info: dict[str, Any]) -> str | None:
    """The XMP packet of an opened image (``image.info``), as text."""
    raw = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return raw if isinstance(raw, str) else None


def digital_source_type(xmp: str | None) -> str | None:
    """``Iptc4xmpExt:DigitalSourceType`` of an XMP packet (attribute or element form)."""
    import re

    if not xmp:
        return None
    m = re.search(r'Iptc4xmpExt:DigitalSourceType\s*=\s*"([^"]*)"', xmp) or re.search(
        r"<Iptc4xmpExt:DigitalSourceType>([^<]*)<", xmp)
    return m.group(1) if m else None


# -- C2PA -------------------------------------------------------------------------------------------------------

class C2paUnavailable(RuntimeError):
    """c2pa-python is not installed (``pip install image-gen[c2pa]``)."""


def c2pa_manifest(p: Provenance, title: str, mime: str) -> dict[str, Any]:
    """The manifest definition: each model as a C2PA action, then the delivery edits, and our own assertion."""
    actions: list[dict[str, Any]] = []
    for i, m in enumerate(p.models):
        actions.append({
            "action": "c2pa.created" if i == 0 else "c2pa.edited",
            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
            "softwareAgent": {"name": m.model},
            "parameters": {"description": f"stage {m.stage}: {m.operation}"},
        })
    for edit in p.edits:
        action = {"cropped": "c2pa.cropped", "resized": "c2pa.resized"}.get(edit.split(" ", 1)[0], "c2pa.edited")
        entry: dict[str, Any] = {"action": action, "softwareAgent": {"name": f"{p.generator} {p.version}"},
                                 "parameters": {"description": edit}}
        if not actions:
            entry["action"] = "c2pa.created"
            entry["digitalSourceType"] = TRAINED_ALGORITHMIC_MEDIA
        actions.append(entry)
    return {
        "claim_generator_info": [{"name": p.generator, "version": p.version}],
        "title": title,
        "format": mime,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": actions}},
            {"label": C2PA_ASSERTION, "data": {"run_id": p.run_id, "channel": p.channel, "simulated": p.simulated,
                                               "models": [m.to_dict() for m in p.models], "edits": list(p.edits)}},
        ],
    }


def _algorithm(key_pem: bytes) -> str:
    """The C2PA signing algorithm for a private key: ES256/384/512 (EC), PS256 (RSA), Ed25519."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(key_pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {256: "es256", 384: "es384", 521: "es512"}.get(key.curve.key_size, "es256")
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise ValueError(f"unsupported key type for C2PA signing: {type(key).__name__}")


@dataclass
class C2paSigner:
    """Signs rendition bytes with the user's certificate chain and key (PEM files)."""

    cert_path: str
    key_path: str
    tsa_url: str | None = None

    def _files(self) -> tuple[bytes, bytes]:
        from image_gen.errors import InputError

        out = []
        for path, name in ((self.cert_path, "provenance.c2pa_cert"), (self.key_path, "provenance.c2pa_key")):
            try:
                out.append(Path(path).expanduser().read_bytes())
            except OSError as exc:
                raise InputError(f"cannot read {path}: {exc.strerror or exc}", field=name) from None
        return out[0], out[1]

    def sign(self, data: bytes, fmt_mime: str, manifest: dict[str, Any]) -> bytes:
        """``data`` with the manifest embedded and signed."""
        try:
            import c2pa
        except ImportError as exc:
            raise C2paUnavailable("C2PA signing needs c2pa-python: pip install 'image-gen[c2pa]'") from exc
        cert, key = self._files()
        info = c2pa.C2paSignerInfo(_algorithm(key), cert, key, self.tsa_url)
        signer = c2pa.Signer.from_info(info)
        context = c2pa.Context(c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))
        try:
            with c2pa.Builder(manifest, context) as builder:
                out = io.BytesIO()
                builder.sign(signer, fmt_mime, io.BytesIO(data), out)
                return out.getvalue()
        finally:
            signer.close()
            context.close()


def read_c2pa(data: bytes, fmt_mime: str, trust_anchors: bytes | None = None) -> dict[str, Any]:
    """The manifest store of signed bytes as JSON, with the validation state (``Valid``, ``Trusted``...)."""
    import c2pa

    context = None
    if trust_anchors is not None:
        context = c2pa.Context(c2pa.Settings.from_dict(
            {"trust": {"trust_anchors": trust_anchors.decode()}, "verify": {"verify_trust": True}}))
    try:
        reader = c2pa.Reader(fmt_mime, io.BytesIO(data), context=context) if context else \
            c2pa.Reader(fmt_mime, io.BytesIO(data))
        with reader:
            store: dict[str, Any] = json.loads(reader.json())
            store["validation_state"] = reader.get_validation_state()
            return store
    finally:
        if context is not None:
            context.close()


def active_manifest(store: dict[str, Any]) -> dict[str, Any]:
    manifest: dict[str, Any] = store["manifests"][store["active_manifest"]]
    return manifest


def models_in_manifest(manifest: dict[str, Any]) -> list[str]:
    """The software agents of the model actions (those with a digital source type), in order."""
    out: list[str] = []
    for a in manifest.get("assertions", []):
        if a.get("label", "").startswith("c2pa.actions"):
            for act in a["data"]["actions"]:
                if act.get("digitalSourceType") == TRAINED_ALGORITHMIC_MEDIA:
                    out.append(act["softwareAgent"]["name"] if isinstance(act.get("softwareAgent"), dict)
                               else str(act.get("softwareAgent")))
    return out


def model_names(steps: Sequence[ModelStep]) -> list[str]:
    return [m.model for m in steps]
