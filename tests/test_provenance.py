"""C2PA provenance: every exported video and image carries a signed manifest that `verify` (and `sora-diffusers
verify`) reads back as valid, and reports as tampered once a byte of the media changes."""

import json
import warnings

import numpy as np
import PIL.Image
import pytest

from sora_diffusers.cli import main
from sora_diffusers.utils import provenance
from sora_diffusers.utils.export import export_to_image, export_to_video, load_metadata
from sora_diffusers.utils.provenance import (
    DIGITAL_SOURCE_TYPE,
    GENERATION_ASSERTION,
    prompt_sha256,
    public_metadata,
    verify,
)


pytest.importorskip("c2pa", reason="C2PA needs `pip install sora_diffusers[provenance]`")

PROMPT = "a red circle moving right"
METADATA = {"prompt": PROMPT, "seed": 7, "model": "/home/someone/models/tiny-model", "num_inference_steps": 2}


def _video(num_frames=5, height=16, width=24) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((num_frames, height, width, 3), dtype=np.float32)  # (T, H, W, 3) in [0, 1]


def _flip_media_byte(path, marker: bytes, offset: int = 64) -> None:
    """Invert one byte `offset` bytes after `marker` (the mp4 `mdat` box, the png `IDAT` chunk): the pixels change,
    the manifest does not."""
    data = bytearray(path.read_bytes())
    start = data.index(marker)
    data[start + offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def user_credentials(tmp_path_factory):
    """A certificate chain and key of the caller's own (here: a fresh CA + leaf, like the development one)."""
    chain, key = provenance._generate_development_credentials()
    directory = tmp_path_factory.mktemp("credentials")
    (directory / "chain.pem").write_bytes(chain)
    (directory / "key.pem").write_bytes(key)
    return directory / "chain.pem", directory / "key.pem"


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".png"])
def test_exported_files_carry_a_valid_manifest_with_our_assertions(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    with pytest.warns(UserWarning, match="development certificate"):
        if suffix == ".png":
            export_to_image(_video()[0], path, metadata=METADATA)
        else:
            export_to_video(_video(), path, fps=8, metadata=METADATA)

    result = verify(path)

    assert result.status == "valid" and result.is_valid
    assert result.claim_generator.startswith("sora_diffusers/")
    assert [action["action"] for action in result.actions] == ["c2pa.created"]
    assert result.actions[0]["digitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert result.generation == {
        "model": "tiny-model",  # the folder's name, not its path
        "seed": 7,
        "num_inference_steps": 2,
        "prompt_sha256": prompt_sha256(PROMPT),
    }
    assert PROMPT not in json.dumps(result.to_dict())
    assert result.signer["common_name"] == "sora_diffusers development signer" and not result.trusted
    assert [failure["code"] for failure in result.failures] == ["signingCredential.untrusted"]
    # the container metadata is still there, without the local path
    assert load_metadata(path) == {**METADATA, "model": "tiny-model"}


@pytest.mark.parametrize(("suffix", "marker"), [(".mp4", b"mdat"), (".png", b"IDAT")])
def test_a_changed_byte_of_the_media_is_reported_as_tampered(tmp_path, suffix, marker):
    path = tmp_path / f"out{suffix}"
    if suffix == ".png":
        export_to_image(_video()[0], path, metadata=METADATA)
    else:
        export_to_video(_video(), path, metadata=METADATA)
    assert verify(path).status == "valid"

    _flip_media_byte(path, marker)
    result = verify(path)

    assert result.status == "tampered" and not result.is_valid
    codes = {failure["code"] for failure in result.failures}
    assert codes & {"assertion.bmffHash.mismatch", "assertion.dataHash.mismatch"}, codes


def test_files_without_a_manifest_are_missing(tmp_path):
    PIL.Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "plain.png")
    export_to_video(_video(), tmp_path / "opted_out.mp4", c2pa=False)
    export_to_image(_video()[0], tmp_path / "opted_out.png", c2pa=False)

    for name in ("plain.png", "opted_out.mp4", "opted_out.png"):
        assert verify(tmp_path / name).status == "missing", name


def test_opting_out_writes_no_manifest_and_no_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither the development certificate's warning nor another
        export_to_video(_video(), tmp_path / "video.mp4", metadata=METADATA, c2pa=False)
    assert b"c2pa" not in (tmp_path / "video.mp4").read_bytes()
    assert load_metadata(tmp_path / "video.mp4")["seed"] == 7


def test_signing_with_the_callers_certificate(tmp_path, user_credentials):
    cert, key = user_credentials
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no development-certificate warning
        export_to_video(_video(), tmp_path / "video.mp4", metadata=METADATA, c2pa_cert=cert, c2pa_key=key)

    result = verify(tmp_path / "video.mp4")

    assert result.status == "valid"
    assert result.signer["alg"].lower() == "es256"
    assert result.generation["prompt_sha256"] == prompt_sha256(PROMPT)


def test_bad_signing_arguments_fail_before_writing(tmp_path, user_credentials):
    cert, key = user_credentials
    with pytest.raises(ValueError, match="both `c2pa_cert` and `c2pa_key`"):
        export_to_video(_video(), tmp_path / "a.mp4", c2pa_cert=cert)
    with pytest.raises(ValueError, match="`c2pa=False` writes none"):
        export_to_image(_video()[0], tmp_path / "a.png", c2pa=False, c2pa_cert=cert, c2pa_key=key)
    with pytest.raises(ValueError, match="`c2pa_key`: no such file"):
        export_to_video(_video(), tmp_path / "a.mp4", c2pa_cert=cert, c2pa_key=tmp_path / "nope.pem")
    (tmp_path / "not_a_key.pem").write_text("hello")
    with pytest.raises(ValueError, match="not a PEM private key"):
        export_to_video(_video(), tmp_path / "a.mp4", c2pa_cert=cert, c2pa_key=tmp_path / "not_a_key.pem")
    _, other_key = provenance._generate_development_credentials()
    (tmp_path / "other_key.pem").write_bytes(other_key)  # a valid key, but not the certificate's
    with pytest.raises(ValueError, match="Cannot sign with .*does not match"):
        export_to_image(_video()[0], tmp_path / "a.png", c2pa_cert=cert, c2pa_key=tmp_path / "other_key.pem")
    # nothing written, no temporary left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_key.pem", "other_key.pem"]


def test_without_c2pa_python_the_file_keeps_its_container_metadata(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "c2pa_available", lambda: False)
    with pytest.warns(UserWarning, match="c2pa-python is not installed"):
        export_to_image(_video()[0], tmp_path / "frame.png", metadata=METADATA)

    assert verify(tmp_path / "frame.png").status == "missing"
    assert load_metadata(tmp_path / "frame.png")["seed"] == 7


def test_development_certificate_is_cached_and_private(tmp_path, monkeypatch):
    monkeypatch.delenv("SORA_DIFFUSERS_C2PA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = provenance.development_credentials()
    second = provenance.development_credentials()

    stored = tmp_path / "sora_diffusers" / "c2pa" / "development.json"
    assert first == second and stored.is_file()
    assert stored.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in stored.parent.iterdir()] == ["development.json"]  # no temporary left


def test_public_metadata_drops_local_paths_and_keeps_prompts(tmp_path):
    prompt = "/imagine a circle \\ a square\nat ~ dusk"
    metadata = {
        "model": "/data/models/run-3",
        "hub": "owner/name",
        "inputs": ["/home/me/first.png", "clip.mp4", "C:\\clips\\b.mp4"],
        "lora": ["/home/me/loras/style.safetensors:0.8", "owner/lora:1.0", "~/loras/x.safetensors"],
        "output_dir": str(tmp_path),  # any key: an existing local path
        "prompt": prompt,
        "seed": 1,
    }
    assert public_metadata(metadata) == {
        "model": "run-3",
        "hub": "owner/name",
        "inputs": ["first.png", "clip.mp4", "b.mp4"],
        "lora": ["style.safetensors:0.8", "owner/lora:1.0", "x.safetensors"],
        "output_dir": tmp_path.name,
        "prompt": prompt,
        "seed": 1,
    }


# ---- sora-diffusers verify ------------------------------------------------------------------------------------------


def test_cli_verify_reports_valid_tampered_and_missing(tmp_path, capsys):
    path = tmp_path / "video.mp4"
    export_to_video(_video(), path, metadata=METADATA)

    assert main(["verify", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"{path}: valid" in text and "c2pa.created" in text and DIGITAL_SOURCE_TYPE in text
    assert f"{GENERATION_ASSERTION}.prompt_sha256: {prompt_sha256(PROMPT)}" in text

    assert main(["verify", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "valid" and report["generation"]["seed"] == 7

    _flip_media_byte(path, b"mdat")
    assert main(["verify", str(path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "tampered"

    export_to_video(_video(), tmp_path / "plain.mp4", c2pa=False)
    assert main(["verify", str(tmp_path / "plain.mp4")]) == 1
    assert capsys.readouterr().out.strip() == f"{tmp_path / 'plain.mp4'}: missing (no C2PA manifest)"


def test_cli_verify_of_a_missing_file_is_an_argument_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(tmp_path / "nothing.mp4")])
    assert exit_info.value.code == 2
    assert "no such file" in capsys.readouterr().err
