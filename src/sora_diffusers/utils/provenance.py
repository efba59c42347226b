"""C2PA provenance: sign generated videos and images with a C2PA manifest, and verify them.

Every file that `export_to_video` / `export_to_image` (and so the `sora-diffusers` command line) writes carries a
C2PA manifest (https://c2pa.org) made with `c2pa-python` (`pip install sora_diffusers[provenance]`):
- the claim generator `sora_diffusers/<version>`;
- a `c2pa.actions` assertion with one `c2pa.created` action whose `digitalSourceType` is IPTC's
  `trainedAlgorithmicMedia` (the content was made by a generative model);
- an `org.sora_diffusers.generation` assertion: the model (a folder's name or a Hub repo id, never a local path),
  the seed, the pipeline and sampling settings, and the SHA-256 of the prompt (never the prompt itself).

The manifest is signed with the caller's certificate chain and private key, or, when none is given, with a development
certificate generated once on this machine (an ES256 CA and leaf, cached under `~/.cache/sora_diffusers/c2pa/`).
A development certificate proves that the file was not changed after it was written, not who wrote it: verifiers
report it as untrusted, and signing with it warns.
"""

import datetime
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_path


DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATION_ASSERTION = "org.sora_diffusers.generation"
C2PA_SUFFIXES = (".mp4", ".gif", ".png", ".jpg", ".jpeg")
# Metadata keys whose text is replaced by its SHA-256 in the manifest: a manifest travels with the file, the prompt
# is the user's to share or not.
HASHED_KEYS = ("prompt", "negative_prompt")
# Validation codes that do not mean the file changed: a development (or any self-made) certificate is not on the
# C2PA trust list, which says nothing about the file's integrity.
_BENIGN_FAILURES = {"signingCredential.untrusted"}
_DEVELOPMENT_WARNING = (
    "Signed the C2PA manifest of {path} with a development certificate generated on this machine ({cache}): it "
    "shows that the file was not changed, not who made it. Pass your own certificate chain and key (`c2pa_cert` and "
    "`c2pa_key`, or --c2pa-cert and --c2pa-key) to sign as yourself."
)


def c2pa_available() -> bool:
    """Whether `c2pa-python` is installed (`pip install sora_diffusers[provenance]`)."""
    try:
        import c2pa  # noqa: F401
    except ImportError:
        return False
    return True


def prompt_sha256(prompt: str) -> str:
    """The SHA-256 (hex) of a prompt's UTF-8 text: what a manifest stores instead of the prompt."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def public_name(value: str) -> str:
    """A local path as its last component (`/home/me/models/tiny` -> `tiny`, `~/loras/a.safetensors` ->
    `a.safetensors`, `C:\\models\\tiny` -> `tiny`); anything else (a Hub repo id, a bare name) unchanged. Metadata
    must not reveal the layout of the machine that made the file."""
    text = str(value)
    if _looks_like_a_path(text):
        return Path(text.replace("\\", "/")).name or text
    return text


def _looks_like_a_path(text: str) -> bool:
    windows_drive = len(text) > 2 and text[0].isalpha() and text[1] == ":" and text[2] in "\\/"
    return "\n" not in text and (os.path.isabs(text) or text.startswith(("~", "./", "../")) or windows_drive)


# Metadata keys whose values are paths (or lists of them): reduced to names whatever their form. Any other text is
# reduced only when it is the path of an existing file or folder, so that a prompt is never rewritten.
PATH_KEYS = ("model", "inputs", "lora", "image", "video", "video_end")


def public_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """`metadata` with local paths reduced to their names: the values of `PATH_KEYS` (also inside lists, and a LoRA
    given as `PATH:SCALE`), and any other text that is the path of an existing file or folder."""

    def clean(value: Any, is_path: bool) -> Any:
        if isinstance(value, str):
            path, colon, scale = value.rpartition(":")
            if is_path and colon and path and _is_number(scale) and _looks_like_a_path(path):
                return f"{public_name(path)}:{scale}"  # a LoRA as PATH:SCALE
            if is_path or (_looks_like_a_path(value) and os.path.exists(os.path.expanduser(value))):
                return public_name(value)
            return value
        if isinstance(value, (list, tuple)):
            return [clean(item, is_path) for item in value]
        if isinstance(value, dict):
            return {key: clean(item, is_path or key in PATH_KEYS) for key, item in value.items()}
        return value

    return {key: clean(value, key in PATH_KEYS) for key, value in (metadata or {}).items()}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def generation_assertion(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The data of the `org.sora_diffusers.generation` assertion: `metadata` without local paths, with the prompt
    and negative prompt as SHA-256 hashes (`prompt_sha256`, `negative_prompt_sha256`)."""
    data = {}
    for key, value in public_metadata(metadata).items():
        if key in HASHED_KEYS and isinstance(value, str):
            data[f"{key}_sha256"] = prompt_sha256(value)
        elif key not in HASHED_KEYS:
            data[key] = value
    return data


def build_manifest(metadata: dict[str, Any] | None, title: str) -> dict[str, Any]:
    """The C2PA manifest definition of a generated file (see the module's docstring)."""
    from .. import __version__

    agent = {"name": "sora_diffusers", "version": __version__}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {"action": "c2pa.created", "digitalSourceType": DIGITAL_SOURCE_TYPE, "softwareAgent": agent}
                    ]
                },
            },
            {"label": GENERATION_ASSERTION, "data": generation_assertion(metadata)},
        ],
    }


def sign_file(
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    cert: str | os.PathLike | None = None,
    key: str | os.PathLike | None = None,
    title: str | None = None,
) -> bool:
    """Embed a signed C2PA manifest into the file at `path`, in place (through a temporary file beside it).

    Args:
        path: an mp4 (non-fragmented), gif, png or jpeg.
        metadata: what made the file (prompt, seed, model, ...); see `generation_assertion`.
        cert, key: a PEM certificate chain (signer first) and its PEM private key (EC P-256/384/521, RSA-PSS or
            Ed25519). Neither: the development certificate, with a warning.
        title: the manifest's title (default: the file's name).

    Returns:
        `bool`: `True` when the file was signed; `False`, with a warning, when it could not be (`c2pa-python` is not
        installed, or the format is not one C2PA embeds into): the file keeps its container metadata only.

    Raises:
        ValueError: `cert` without `key` or the other way round, or files that are not a usable certificate and key.
    """
    path = Path(path)
    name = title or path.name  # `path` may be a temporary file: warnings name the file the user asked for
    if (cert is None) != (key is None):
        raise ValueError(f"Pass both `c2pa_cert` and `c2pa_key`, or neither; got cert={cert!r}, key={key!r}.")
    if path.suffix.lower() not in C2PA_SUFFIXES:
        warnings.warn(
            f"C2PA cannot be embedded into a {path.suffix!r} file ({', '.join(C2PA_SUFFIXES)} can): {name} "
            "carries its container metadata only.",
            stacklevel=2,
        )
        return False
    if not c2pa_available():
        warnings.warn(
            f"c2pa-python is not installed: {name} carries its container metadata only, no signed C2PA "
            "manifest. `pip install sora_diffusers[provenance]` to sign generated files.",
            stacklevel=2,
        )
        return False
    import c2pa

    if cert is None:
        chain, private_key = development_credentials()
        warnings.warn(_DEVELOPMENT_WARNING.format(path=name, cache=_credentials_dir()), stacklevel=2)
    else:
        chain, private_key = _read_credentials(Path(cert), Path(key))
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(_algorithm(private_key), chain, private_key, None))
    except c2pa.C2paError as error:
        raise ValueError(f"Cannot sign with `c2pa_cert`={cert!r} and `c2pa_key`={key!r}: {error}") from error
    try:
        # a temporary of the file the user asked for, even when `path` is itself one (an export in progress)
        with signer, c2pa.Builder(build_manifest(metadata, name)) as builder, atomic_path(path) as signed:
            builder.sign_file(path, signed, signer)
    except c2pa.C2paError as error:
        if cert is not None and "signature" in type(error).__name__.lower():
            raise ValueError(f"Cannot sign with `c2pa_cert`={cert!r} and `c2pa_key`={key!r}: {error}") from error
        warnings.warn(f"C2PA signing failed ({error}): {name} carries its container metadata only.", stacklevel=2)
        return False
    return True


# ---- verifying ------------------------------------------------------------------------------------------------------


@dataclass
class VerificationResult:
    r"""
    What `verify` found in a file.

    Args:
        status (`str`): "valid" (a manifest whose signature and hashes match the file), "tampered" (a manifest that
            no longer matches: the file, or the manifest, changed after signing) or "missing" (no manifest).
        claim_generator (`str`): e.g. "sora_diffusers/0.1.0".
        actions (`list[dict]`): the `c2pa.actions` assertion's actions.
        generation (`dict`): the `org.sora_diffusers.generation` assertion (model, seed, prompt_sha256, ...).
        signer (`dict`): the signature's issuer, common name and algorithm.
        trusted (`bool`): whether the certificate is on the verifier's trust list (a development one is not).
        failures (`list[dict]`): the validation failures (code and explanation), untrusted certificates included.
    """

    path: str
    status: str
    claim_generator: str | None = None
    actions: list[dict] = field(default_factory=list)
    generation: dict[str, Any] = field(default_factory=dict)
    signer: dict[str, Any] = field(default_factory=dict)
    trusted: bool = False
    failures: list[dict] = field(default_factory=list)

    @property
    def is_valid(self) -> bool:
        return self.status == "valid"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "claim_generator": self.claim_generator,
            "actions": self.actions,
            "generation": self.generation,
            "signer": self.signer,
            "trusted": self.trusted,
            "failures": self.failures,
        }

    def to_text(self) -> str:
        if self.status == "missing":
            return f"{self.path}: missing (no C2PA manifest)"
        lines = [f"{self.path}: {self.status}"]
        lines.append(f"claim generator: {self.claim_generator}")
        for action in self.actions:
            lines.append(f"action: {action.get('action')} ({action.get('digitalSourceType', 'no source type')})")
        for key, value in self.generation.items():
            lines.append(f"{GENERATION_ASSERTION}.{key}: {value}")
        signer = ", ".join(f"{key} {value}" for key, value in self.signer.items() if value)
        lines.append(f"signed by: {signer} ({'trusted' if self.trusted else 'not on a trust list'})")
        for failure in self.failures:
            kind = "note" if failure.get("code") in _BENIGN_FAILURES else "failure"
            lines.append(f"{kind}: {failure.get('code')}: {failure.get('explanation')}")
        return "\n".join(lines)


def verify(path: str | os.PathLike) -> VerificationResult:
    """Read and validate the C2PA manifest of a file: valid, tampered or missing (see `VerificationResult`).

    Raises:
        FileNotFoundError: no file at `path`.
        ImportError: `c2pa-python` is not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    try:
        import c2pa
    except ImportError as error:
        raise ImportError("Verifying C2PA needs c2pa-python: `pip install sora_diffusers[provenance]`.") from error
    try:
        with c2pa.Reader(path) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError as error:
        if "ManifestNotFound" in type(error).__name__ or "JUMBF" in str(error):
            return VerificationResult(str(path), "missing")
        # A manifest so damaged that it cannot be read is one that was changed.
        failure = {"code": type(error).__name__.lstrip("_"), "explanation": str(error)}
        return VerificationResult(str(path), "tampered", failures=[failure])
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = list(results.get("failure", []))
    failures += [status for status in store.get("validation_status", []) or [] if status not in failures]
    trusted = store.get("validation_state") == "Trusted"
    tampered = store.get("validation_state") == "Invalid" or any(
        failure.get("code") not in _BENIGN_FAILURES for failure in failures
    )
    assertions = {assertion["label"]: assertion.get("data", {}) for assertion in manifest.get("assertions", [])}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get("actions", [])
    info = (manifest.get("claim_generator_info") or [{}])[0]
    generator = manifest.get("claim_generator") or f"{info.get('name')}/{info.get('version')}"
    signature = manifest.get("signature_info", {})
    return VerificationResult(
        path=str(path),
        status="tampered" if tampered else "valid",
        claim_generator=generator,
        actions=actions,
        generation=assertions.get(GENERATION_ASSERTION, {}),
        signer={key: signature.get(key) for key in ("issuer", "common_name", "alg")},
        trusted=trusted,
        failures=[{"code": f.get("code"), "explanation": f.get("explanation")} for f in failures],
    )


# ---- certificates ---------------------------------------------------------------------------------------------------


def _credentials_dir() -> Path:
    """`$SORA_DIFFUSERS_C2PA_DIR`, else `sora_diffusers/c2pa` in `$XDG_CACHE_HOME` or `~/.cache`."""
    if os.environ.get("SORA_DIFFUSERS_C2PA_DIR"):
        return Path(os.environ["SORA_DIFFUSERS_C2PA_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "sora_diffusers" / "c2pa"


def development_credentials() -> tuple[bytes, bytes]:
    """A development signer: (PEM chain leaf + CA, PEM private key), generated once and cached under
    `~/.cache/sora_diffusers/c2pa/development.json` (`$XDG_CACHE_HOME` is respected, `$SORA_DIFFUSERS_C2PA_DIR`
    replaces the folder), regenerated when its leaf expires.

    Chain and key are one file written atomically, so concurrent first uses never pair one's key with another's
    certificate.
    """
    from cryptography import x509

    file = _credentials_dir() / "development.json"
    with_margin = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    try:
        stored = json.loads(file.read_text())
        chain, key = stored["chain"].encode(), stored["key"].encode()
        if x509.load_pem_x509_certificates(chain)[0].not_valid_after_utc > with_margin:
            return chain, key
    except (OSError, ValueError, KeyError):
        pass  # absent, unreadable or expired: make a new one
    chain, key = _generate_development_credentials()
    file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(file) as temporary:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # a private key: owner only
        with os.fdopen(descriptor, "w") as out:
            json.dump({"chain": chain.decode(), "key": key.decode()}, out)
    return chain, key


def _generate_development_credentials() -> tuple[bytes, bytes]:
    """An ES256 (P-256) CA and a leaf it signs, as C2PA requires of a signer: the leaf is not a CA, has the
    digitalSignature key usage and the emailProtection extended key usage."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sora_diffusers development certificate"),
            ]
        )

    def usage(signature: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=signature,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=not signature,
            crl_sign=not signature,
            encipher_only=False,
            decipher_only=False,
        )

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name, leaf_name = name("sora_diffusers development CA"), name("sora_diffusers development signer")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(signature=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(leaf_name)
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + ca.public_bytes(pem)
    key = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return chain, key


def _read_credentials(cert: Path, key: Path) -> tuple[bytes, bytes]:
    for option, file in (("c2pa_cert", cert), ("c2pa_key", key)):
        if not file.is_file():
            raise ValueError(f"`{option}`: no such file: {file}")
    chain, private_key = cert.read_bytes(), key.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in chain:
        raise ValueError(f"`c2pa_cert`: {cert} is not a PEM certificate chain (-----BEGIN CERTIFICATE-----).")
    if b"PRIVATE KEY-----" not in private_key:
        raise ValueError(f"`c2pa_key`: {key} is not a PEM private key (-----BEGIN PRIVATE KEY-----).")
    return chain, private_key


def _algorithm(private_key: bytes) -> str:
    """The C2PA signing algorithm of a PEM private key: es256/384/512 by EC curve, ps256 for RSA, ed25519."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        loaded = load_pem_private_key(private_key, password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"`c2pa_key` is not an unencrypted PEM private key: {error}") from error
    if isinstance(loaded, ec.EllipticCurvePrivateKey):
        algorithms = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if loaded.curve.name not in algorithms:
            raise ValueError(f"`c2pa_key`: EC curve {loaded.curve.name} is not one C2PA signs with ({algorithms}).")
        return algorithms[loaded.curve.name]
    if isinstance(loaded, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise ValueError(f"`c2pa_key`: a {type(loaded).__name__} is not a key C2PA signs with (EC, RSA or Ed25519).")
