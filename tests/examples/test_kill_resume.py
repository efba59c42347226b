"""A training run SIGKILLed at 10 seeded points, some inside checkpoint saves, and resumed with
`--resume_from_checkpoint latest` each time, ends on the very weights of an uninterrupted run
(`benchmarks/bench_kill_resume.py`; RELIABILITY.md gives the figures of its longer run)."""

import json
import os
import subprocess
import sys

from ..conftest import REPO_ROOT


def test_ten_kills_and_resumes_end_on_the_uninterrupted_weights(tmp_path):
    summary_file = tmp_path / "summary.json"
    command = [
        sys.executable, str(REPO_ROOT / "benchmarks" / "bench_kill_resume.py"), "--kills", "10",
        "--max_train_steps", "6", "--seed", "0", "--work_dir", str(tmp_path / "runs"), "--json", str(summary_file),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and summary_file.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(summary_file.read_text())

    assert summary["kills"] == 10
    assert summary["kills_during_checkpoint_save"] >= 1, summary["kill_log"]
    assert summary["resumes_checked"] >= 5 and summary["resumes_bitwise_equal"] == summary["resumes_checked"]
    assert summary["final_weights_bitwise_equal"] and summary["final_tensors"] > 100
    assert summary["final_config_equal"] and summary["losses_equal"]
    assert summary["orphan_ffmpeg"] == 0 and summary["leftovers"] == []
    assert not list((tmp_path / "runs" / "killed").rglob(".*tmp*")), "temporaries left in the output folder"
