"""The code blocks of README.md and examples/README.md run as written, so the documentation cannot drift from the code.

Every fenced ```bash / ```sh / ```python block runs, from a scratch folder that looks like the repository root (links
to its `src/`, `examples/`, ...: what a block writes stays out of the repository):
- a bash block as `bash -euo pipefail -c BLOCK`;
- the python blocks of one document in order in one interpreter, as a reader pastes them into one session (later
  blocks use `pipe` from earlier ones). Tracebacks name the document's own line numbers.

Cost is lowered by the harness only, never by the library's defaults: `SORA_DIFFUSERS_STEPS=2` sets the default of
`sora-diffusers generate --steps` (the CLI reads it), and a prologue prepended to the python blocks makes 2 the default
`num_inference_steps` of `SoraPipeline.__call__` (and so of its task pipelines) when `SORA_DIFFUSERS_DOCS_STEPS` is
set.

A block that cannot run here is marked right above its fence: `<!-- docs-test: skip (REASON) -->` (installs packages,
needs a GPU or the real Wan weights, ...), and a block that runs only smaller takes substitutions,
`<!-- docs-test: replace "OLD" "NEW" (REASON) -->` (one comment per substitution, stacked). `EXPECTED_BLOCKS` counts
what runs and what is skipped per document, so a new block cannot be skipped, or escape the test, unnoticed.
"""

import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import pytest


REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "examples/README.md")
# (run, skipped) blocks per document: update it with the documents, and give every skip its reason in the markdown.
EXPECTED_BLOCKS = {"README.md": (6, 9), "examples/README.md": (2, 6)}
RUN_LANGUAGES = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
# What the scratch folder links to: what a user running the README from the repository root can reach.
ROOT_ENTRIES = (
    "src",
    "examples",
    "conversion_scripts",
    "benchmarks",
    "tests",
    "README.md",
    "model_card.md",
    "pyproject.toml",
    "setup.py",
)
DOCS_STEPS = "2"
BLOCK_TIMEOUT_S = 900
QUICKSTART_COMMAND = 'sora-diffusers generate "a red circle moving to the right" -o demo.mp4 --seed 0'

MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<directive>.*?)\s*-->\s*$")
SKIP = re.compile(r"^skip\s+\((?P<reason>.*\S.*)\)$")
REPLACE = re.compile(r'^replace\s+"(?P<old>(?:[^"\\]|\\.)+)"\s+"(?P<new>(?:[^"\\]|\\.)*)"(?:\s+\((?P<reason>.*)\))?$')
FENCE = re.compile(r"^```(?P<info>[^`]*)$")
# Files a block writes: `-o NAME` / `--output_dir NAME` in bash, a quoted *.mp4/*.png/*.gif outside examples/ in
# python.
BASH_OUTPUT = re.compile(r"(?:^|\s)(?:-o|--output|--output_dir)\s+(?P<path>[^\s;&|]+)")
PYTHON_OUTPUT = re.compile(r"""["'](?P<path>(?!examples/)[\w./-]+\.(?:mp4|png|gif))["']""")


@dataclass
class Block:
    doc: str
    line: int  # 1-based line of the block's first code line in the document
    language: str  # "bash" or "python"
    text: str
    skip: str | None = None  # the reason, for a skipped block
    replacements: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def code(self) -> str:
        """The text that runs: the block with its `replace` substitutions (each must match, or the marker is stale)."""
        code = self.text
        for old, new in self.replacements:
            if old not in code:
                raise ValueError(f"{self.name}: docs-test replace {old!r} matches nothing in the block")
            code = code.replace(old, new)
        return code

    def outputs(self) -> list[str]:
        pattern = BASH_OUTPUT if self.language == "bash" else PYTHON_OUTPUT
        return sorted({match["path"] for match in pattern.finditer(self.code)})


def parse_blocks(markdown: str, doc: str) -> list[Block]:
    """The runnable fenced blocks of a markdown document, with the docs-test markers right above each.

    Raises `ValueError` for a marker that is malformed (a skip without a reason, an unknown directive) or that stands
    above no runnable block, so a marker cannot silently stop meaning anything.
    """
    blocks, markers = [], []  # markers: (line, directive) waiting for the next fence
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i])
        fence = FENCE.match(lines[i])
        if marker:
            markers.append((i + 1, marker["directive"]))
        elif fence:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            if end is None:
                raise ValueError(f"{doc}:{i + 1}: a code fence that is never closed")
            language = RUN_LANGUAGES.get(fence["info"].strip().split(" ")[0].lower()) if fence["info"] else None
            if language is None and markers:
                raise ValueError(f"{doc}:{markers[0][0]}: a docs-test marker above a block that is not run")
            if language is not None:
                block = Block(doc, i + 2, language, "\n".join(lines[i + 1 : end]) + "\n")
                for line, directive in markers:
                    _apply_directive(block, directive, f"{doc}:{line}")
                blocks.append(block)
            markers = []
            i = end
        elif lines[i].strip() and markers:
            raise ValueError(f"{doc}:{markers[0][0]}: a docs-test marker must stand right above a code block")
        i += 1
    if markers:
        raise ValueError(f"{doc}:{markers[0][0]}: a docs-test marker above no code block")
    return blocks


def _apply_directive(block: Block, directive: str, where: str) -> None:
    if skip := SKIP.match(directive):
        block.skip = skip["reason"].strip()
    elif replace := REPLACE.match(directive):
        unescape = lambda text: re.sub(r"\\(.)", r"\1", text)  # noqa: E731
        block.replacements.append((unescape(replace["old"]), unescape(replace["new"])))
    else:
        raise ValueError(
            f'{where}: unknown docs-test directive {directive!r}; use `skip (REASON)` or `replace "OLD" "NEW"`'
        )


def doc_blocks(doc: str) -> list[Block]:
    return parse_blocks((REPO / doc).read_text(), doc)


ALL_BLOCKS = [block for doc in DOCS for block in doc_blocks(doc)]
BASH_BLOCKS = [block for block in ALL_BLOCKS if block.language == "bash" and block.skip is None]
PYTHON_DOCS = sorted({block.doc for block in ALL_BLOCKS if block.language == "python" and block.skip is None})

PYTHON_PROLOGUE = '''
import functools, inspect, os
from sora_diffusers import SoraPipeline

def _lower_default_steps(call, steps):
    """`SoraPipeline.__call__` with `num_inference_steps` defaulting to `steps` (the task pipelines call it too)."""
    signature = inspect.signature(call)

    @functools.wraps(call)
    def __call__(self, *args, **kwargs):
        if "num_inference_steps" not in signature.bind_partial(self, *args, **kwargs).arguments:
            kwargs["num_inference_steps"] = steps
        return call(self, *args, **kwargs)

    return __call__

if os.environ.get("SORA_DIFFUSERS_DOCS_STEPS"):
    SoraPipeline.__call__ = _lower_default_steps(SoraPipeline.__call__, int(os.environ["SORA_DIFFUSERS_DOCS_STEPS"]))
'''

PYTHON_RUNNER = """
import sys, time
{prologue_exec}
namespace = {{"__name__": "__main__"}}
for name, code in BLOCKS:
    start = time.perf_counter()
    print(f"docs-test: running {{name}}", file=sys.stderr, flush=True)
    exec(compile(code, name.split(":")[0], "exec"), namespace)
    print(f"docs-test: {{name}} took {{time.perf_counter() - start:.1f}} s", file=sys.stderr, flush=True)
"""


# ---- the harness ----------------------------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A scratch folder that looks like the repository root: what the blocks write lands here, not in the repo."""
    root = tmp_path / "repo"
    root.mkdir()
    for entry in ROOT_ENTRIES:
        if (REPO / entry).exists():
            (root / entry).symlink_to(REPO / entry)
    return root


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """This interpreter as `python`, the package's command as `sora-diffusers`, this checkout's `src` first on the
    path, and the harness's lowered step counts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, command in {"python": "", "python3": "", "sora-diffusers": " -m sora_diffusers"}.items():
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)}{command} "$@"\n')
        (bin_dir / name).chmod(0o755)
    environment = dict(os.environ)
    environment.update(
        PATH=f"{bin_dir}{os.pathsep}{environment.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), environment.get("PYTHONPATH")])),
        SORA_DIFFUSERS_STEPS=DOCS_STEPS,
        SORA_DIFFUSERS_DOCS_STEPS=DOCS_STEPS,
        HF_HUB_OFFLINE="1",
        TQDM_DISABLE="1",
        MPLBACKEND="Agg",
        # One intra-op thread: on a busy 2-core machine OpenMP's barriers spin while waiting for a core, and two
        # threads took 3x the CPU time and 3-4x the wall time of one (a 17-frame `generate`: 60 s against 16-23 s).
        OMP_NUM_THREADS="1",
    )
    return environment


def _repo_files() -> set[str]:
    skipped = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".venv", ".venv-ci"}
    files = set()
    for directory, subdirectories, names in os.walk(REPO):
        subdirectories[:] = [d for d in subdirectories if d not in skipped and not d.endswith(".egg-info")]
        files.update(os.path.relpath(os.path.join(directory, name), REPO) for name in names)
    return files


@pytest.fixture
def repo_untouched():
    """Fails the test if running the blocks added or removed a file in the repository."""
    before = _repo_files()
    yield
    after = _repo_files()
    assert after == before, f"the blocks wrote into the repository: added {after - before}, removed {before - after}"


def _run(command: list[str], cwd: Path, env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S, stdin=subprocess.DEVNULL
    )
    print(f"{what}: exit {result.returncode} in {time.perf_counter() - start:.1f} s")
    if result.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {result.returncode})\n--- stdout ---\n{result.stdout[-4000:]}\n"
            f"--- stderr ---\n{result.stderr[-8000:]}",
            pytrace=False,
        )
    return result


def _assert_outputs_written(blocks: list[Block], workdir: Path) -> None:
    for block in blocks:
        missing = [path for path in block.outputs() if not (workdir / path).exists()]
        assert not missing, f"{block.name} ran but did not write {missing}"


# ---- the markers ----------------------------------------------------------------------------------------------------


def test_every_block_runs_or_is_skipped_with_a_reason():
    counts = {}
    for doc in DOCS:
        blocks = [block for block in ALL_BLOCKS if block.doc == doc]
        for block in blocks:
            how = (
                f"skipped: {block.skip}" if block.skip else "runs" + (" with replacements" * bool(block.replacements))
            )
            print(f"{block.name} ({block.language}): {how}")
            block.code  # noqa: B018 (raises for a stale replacement)
        counts[doc] = (sum(block.skip is None for block in blocks), sum(block.skip is not None for block in blocks))
    assert counts == EXPECTED_BLOCKS, "blocks (run, skipped) per document changed: update EXPECTED_BLOCKS"


@pytest.mark.parametrize(
    "markdown, message",
    [
        ("<!-- docs-test: skip -->\n```bash\nls\n```\n", "unknown docs-test directive 'skip'"),
        ("<!-- docs-test: skip () -->\n```bash\nls\n```\n", "unknown docs-test directive"),
        ("<!-- docs-test: ignore (slow) -->\n```bash\nls\n```\n", "unknown docs-test directive 'ignore (slow)'"),
        ("<!-- docs-test: skip (slow) -->\ntext\n```bash\nls\n```\n", "must stand right above a code block"),
        ("<!-- docs-test: skip (slow) -->\n```\nls\n```\n", "above a block that is not run"),
        ("text\n<!-- docs-test: skip (slow) -->\n", "above no code block"),
        ("```bash\nls\n", "never closed"),
    ],
)
def test_malformed_markers_are_errors(markdown, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_blocks(markdown, "doc.md")


def test_markers_parse_into_skips_and_replacements():
    markdown = textwrap.dedent(
        """\
        # Title

        ```
        a layout block: not run
        ```

        <!-- docs-test: skip (needs a GPU) -->
        ```python
        pipe.to("cuda")
        ```

        <!-- docs-test: replace "--steps 100" "--steps 2" (a tiny run) -->
        <!-- docs-test: replace "\\"big\\"" "small" -->
        ```bash
        train --steps 100 --name "big"
        ```
        ```sh
        echo done
        ```
        """
    )
    skipped, replaced, plain = parse_blocks(markdown, "doc.md")

    assert (skipped.language, skipped.line, skipped.skip) == ("python", 9, "needs a GPU")
    assert (replaced.language, replaced.line, replaced.skip) == ("bash", 15, None)
    assert replaced.code == "train --steps 2 --name small\n"
    assert (plain.language, plain.line, plain.code) == ("bash", 18, "echo done\n")
    stale = Block("doc.md", 1, "bash", "train --steps 50\n", replacements=[("--steps 100", "--steps 2")])
    with pytest.raises(ValueError, match="matches nothing"):
        stale.code  # noqa: B018


def test_outputs_are_found_in_bash_and_python_blocks():
    bash = Block(
        "d", 1, "bash", 'sora-diffusers generate "x" -o t2v.mp4 --seed 0\npython t.py --output_dir runs/vae\n'
    )
    python = Block("d", 1, "python", 'export_to_video(v, "long.mp4")\nload("examples/assets/clip.mp4")\n')
    assert bash.outputs() == ["runs/vae", "t2v.mp4"]
    assert python.outputs() == ["long.mp4"]


# ---- the CLI's default number of steps ------------------------------------------------------------------------------


def test_sora_diffusers_steps_sets_the_default_of_steps(monkeypatch, capsys):
    from sora_diffusers.cli import build_parser

    argv = ["generate", "a red circle", "-o", "out.mp4"]
    monkeypatch.delenv("SORA_DIFFUSERS_STEPS", raising=False)
    assert build_parser().parse_args(argv).steps is None  # the pipeline's default
    monkeypatch.setenv("SORA_DIFFUSERS_STEPS", "3")
    assert build_parser().parse_args(argv).steps == 3
    assert build_parser().parse_args([*argv, "--steps", "7"]).steps == 7  # the option wins
    monkeypatch.setenv("SORA_DIFFUSERS_STEPS", "0")
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "argument --steps: must be a positive integer, got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--help"])
    assert "SORA_DIFFUSERS_STEPS" in capsys.readouterr().out


# ---- the sample inputs ----------------------------------------------------------------------------------------------


ASSETS = REPO / "examples" / "assets"
VIDEO_ASSETS = {"clip.mp4": 17, "a.mp4": 9, "b.mp4": 9}  # name -> frames


def test_sample_inputs_are_small_and_what_the_readme_says():
    from sora_diffusers.data import read_video

    files = [ASSETS / "first.png", ASSETS / "lora" / "pytorch_lora_weights.safetensors"]
    files += [ASSETS / name for name in VIDEO_ASSETS]
    for path in files:
        assert 0 < path.stat().st_size < 200 * 1024, path
    with PIL.Image.open(ASSETS / "first.png") as image:
        first = np.asarray(image.convert("RGB"))
    assert first.shape == (256, 256, 3)
    for name, num_frames in VIDEO_ASSETS.items():
        assert read_video(ASSETS / name).shape == (num_frames, 256, 256, 3), name
    clip = read_video(ASSETS / "clip.mp4").astype(np.int16)
    assert np.abs(clip[0] - first).mean() < 2  # first.png is the clip's first frame (through H.264)
    red = (clip[..., 0] > 128) & (clip[..., 2] < 100)
    columns = [np.nonzero(red[t].any(axis=0))[0].mean() for t in (0, 16)]
    assert columns[1] - columns[0] == pytest.approx(80, abs=3)  # the circle moves 5 px per frame to the right


def test_make_assets_writes_the_shipped_inputs(tmp_path):
    sys.path.insert(0, str(ASSETS))
    try:
        import make_assets
    finally:
        sys.path.remove(str(ASSETS))
    from safetensors.torch import load_file

    from sora_diffusers.data import read_video

    make_assets.main(["--output_dir", str(tmp_path)])

    for name in ("first.png", *VIDEO_ASSETS):  # the same pictures; mp4 bytes may differ with the ffmpeg build
        new, shipped = (read_video(directory / name).astype(np.int16) for directory in (tmp_path, ASSETS))
        assert np.abs(new - shipped).max() <= 2, name
    new, shipped = (
        load_file(directory / "lora" / "pytorch_lora_weights.safetensors") for directory in (tmp_path, ASSETS)
    )
    assert new.keys() == shipped.keys() and len(new) == 24  # 6 blocks x (to_q, to_v) x (lora_A, lora_B)
    for key in new:
        assert new[key].equal(shipped[key]), key


# ---- running the documents ------------------------------------------------------------------------------------------


def test_quickstart_generate_runs_as_written(workdir, env, repo_untouched):
    """The README's first command without its `pip install -e . &&`: the embedded model at its own size and length."""
    from sora_diffusers.utils.export import load_metadata, load_video_frames

    (quickstart,) = [block for block in ALL_BLOCKS if "pip install -e . &&" in block.text]
    command = quickstart.text.split("&&", 1)[1].strip()
    assert command == QUICKSTART_COMMAND

    _run(["bash", "-euo", "pipefail", "-c", command], workdir, env, f"{quickstart.name} (generate)")

    assert load_video_frames(workdir / "demo.mp4").shape == (33, 256, 256, 3)
    metadata = load_metadata(workdir / "demo.mp4")
    assert metadata["seed"] == 0 and metadata["num_inference_steps"] == int(DOCS_STEPS)


@pytest.mark.parametrize("block", BASH_BLOCKS, ids=lambda block: block.name)
def test_bash_block_runs(block, workdir, env, repo_untouched):
    _run(["bash", "-euo", "pipefail", "-c", block.code], workdir, env, block.name)
    _assert_outputs_written([block], workdir)


@pytest.mark.parametrize("doc", PYTHON_DOCS)
def test_python_blocks_run_in_order(doc, workdir, env, repo_untouched, tmp_path):
    blocks = [block for block in ALL_BLOCKS if block.doc == doc and block.language == "python" and not block.skip]
    # Padding each block with blank lines puts a traceback's line numbers on the document's own lines.
    sources = [(block.name, "\n" * (block.line - 1) + block.code) for block in blocks]
    script = tmp_path / "run_docs.py"
    script.write_text(
        f"BLOCKS = {sources!r}\nPROLOGUE = {PYTHON_PROLOGUE!r}\n"
        + PYTHON_RUNNER.format(prologue_exec='exec(PROLOGUE, {"__name__": "docs_test_prologue"})')
    )
    result = _run([sys.executable, str(script)], workdir, env, f"{doc} (python blocks)")
    print("\n".join(line for line in result.stderr.splitlines() if line.startswith("docs-test:")))
    _assert_outputs_written(blocks, workdir)
