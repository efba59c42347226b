"""Kill a training run with SIGKILL again and again, resume it each time with `--resume_from_checkpoint latest`, and
check that it ends on the very weights of an uninterrupted run.

The run is `examples/train_vae.py` on a tiny VAE (CPU, one thread): model, AdamW, a cosine schedule with warmup, EMA,
bucketed data crossing epochs, random image batches, crops and posterior samples, a checkpoint every step (at most
two kept, so older ones are deleted while the run goes on), a validation video (ffmpeg) and latent statistics at the
end. First an uninterrupted run, keeping every checkpoint; then the same run killed `--kills` times at seeded random
points (`plan_kill`): the first two kills and a third of the rest wait for a checkpoint save to start and land inside
it, others come after a random delay (during start-up, a step or a save, wherever that falls); from the last step on,
kills wait for the validation video (ffmpeg running), the final model's save or come during start-up. After each
kill:

- what was being written when it died (a checkpoint's temp folder, the final model's staging folder, a validation
  video's temporary) is recorded, and no ffmpeg it started may outlive it by more than 2 s;
- the checkpoint the next attempt resumes from must be bitwise equal to the uninterrupted run's checkpoint of that
  step (model, optimizer, EMA, schedule, random states, data position; not the timings in its metrics).

The last attempt runs to the end. Then every tensor of the final model must be bitwise equal (`torch.equal`) to the
uninterrupted run's, its config (with the measured latent statistics) equal, the logged losses equal step by step, and
the output folder must hold no temporary of any writer.

Each attempt is a fork of this process, which has imported torch and the script once (a fresh interpreter would
spend ~3 s per attempt importing them); `--start exec` runs each attempt as `python examples/train_vae.py ...`
instead. Prints a JSON summary; exit status 1 if any check failed.

    python benchmarks/bench_kill_resume.py --kills 50 --max_train_steps 40
"""

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file


REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "train_vae.py"
TINY_FLAGS = [
    "--resolution", "32", "--num_frames", "5", "--aspect_ratios", "square", "--num_train_samples", "16",
    "--train_batch_size", "4", "--dataloader_num_workers", "0", "--torch_threads", "1",
    "--base_dim", "8", "--dim_mult", "1", "2", "2", "2", "--latent_channels", "4", "--image_prob", "0.5",
    "--crop_size", "16", "--learning_rate", "1e-3", "--lr_scheduler", "cosine", "--lr_warmup_steps", "2",
    "--use_ema", "--logging_steps", "1", "--checkpointing_steps", "1", "--validation_steps", "0",
    "--num_validation_videos", "1", "--stats_num_samples", "2", "--seed", "7",
]  # fmt: skip
SAVE_SHARE = 1 / 3  # of the kills, those aimed at a checkpoint save
TIMINGS = ("steps_per_s",)  # metrics that measure time, not training: may differ between runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--max_train_steps", type=int, default=None, help="default: --kills + 2")
    p.add_argument("--seed", type=int, default=0, help="of the kill points")
    p.add_argument("--start", choices=("fork", "exec"), default="fork")
    p.add_argument("--work_dir", default=None, help="where the runs go (default: a temporary folder, removed)")
    p.add_argument("--json", default=None, help="also write the summary here")
    return p.parse_args(argv)


# ---- starting and watching attempts ---------------------------------------------------------------------------------


def load_script():
    spec = importlib.util.spec_from_file_location("train_vae", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_vae"] = module
    spec.loader.exec_module(module)
    return module


class Attempt:
    """One run of the script in a child process, its output in `log`."""

    def __init__(self, argv: list[str], log: Path, start: str, script):
        self.started, self.status = time.monotonic(), None
        with open(log, "wb") as out:
            if start == "exec":
                command = [sys.executable, str(SCRIPT), *argv]
                env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
                self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
                self.pid = self.process.pid
                return
            self.process = None
            self.pid = os.fork()
            if self.pid == 0:  # the child: the script's main, then out without the parent's exit handlers
                status = 1
                try:
                    os.dup2(out.fileno(), 1)
                    os.dup2(out.fileno(), 2)
                    script.main(argv)
                    status = 0
                except BaseException:
                    import traceback

                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(status)

    def poll(self) -> int | None:
        """The exit status, `None` while it runs (the child is reaped once)."""
        if self.process is not None:
            return self.process.poll()
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()
        elif self.status is None:
            self.status = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])


def ffmpeg_children(pid: int) -> list[int]:
    """Live ffmpeg processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            if name.startswith("ffmpeg") and int(fields[1]) == pid and fields[0] not in "ZX":
                found.append(int(entry.name))
    return found


def is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


class FfmpegWatch(threading.Thread):
    """Notes every ffmpeg an attempt starts (polling /proc), so the check after the kill knows them all."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.seen, self.done = pid, set(), threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.is_set():
            self.seen.update(ffmpeg_children(self.pid))
            time.sleep(0.02)

    def stop(self) -> set[int]:
        self.seen.update(ffmpeg_children(self.pid))
        self.done.set()
        self.join()
        return self.seen


# ---- what is on disk ------------------------------------------------------------------------------------------------

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def latest_step(output_dir: Path) -> int:
    steps = [int(m[1]) for p in output_dir.glob("checkpoint-*") if (m := _CHECKPOINT.match(p.name))]
    return max([s for s in steps if (output_dir / f"checkpoint-{s}" / "checkpoint.json").is_file()], default=0)


def writes_in_progress(output_dir: Path, pid: int) -> list[str]:
    """What process `pid` was writing, from the temporaries it left: `checkpoint save`, `final model save`,
    `validation video`, or another file's name."""
    found = []
    for path in [*output_dir.glob(".*"), *output_dir.glob("validation/.*")]:
        if f"-{pid}" not in path.name:
            continue
        if path.name.startswith(".checkpoint-"):
            found.append("checkpoint save")
        elif path.name.startswith(".staging.tmp-"):
            found.append("final model save")
        elif path.parent.name == "validation":
            found.append("validation video")
        else:
            found.append(path.name)
    return sorted(set(found))


def leftovers(output_dir: Path) -> list[str]:
    """Temporaries of any writer (ours: `.NAME.tmp-PID...`/`.old-PID...`; safetensors': `.tmpXXXXXX`)."""
    pattern = re.compile(r"^\.(.+\.(tmp|old)-\d+.*|tmp[A-Za-z0-9]{6})$")
    return sorted(str(p.relative_to(output_dir)) for p in output_dir.rglob("*") if pattern.match(p.name))


def tensors_equal(a: dict, b: dict) -> tuple[bool, int]:
    same = a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    return same, len(a)


def checkpoints_equal(ours: Path, reference: Path) -> tuple[bool, str]:
    """Every tensor file of two checkpoints bitwise equal, every JSON file equal once timings are left out (so not the
    completion marker, which lists the files' sizes)."""
    names = sorted(str(p.relative_to(ours)) for p in ours.rglob("*") if p.is_file())
    if names != sorted(str(p.relative_to(reference)) for p in reference.rglob("*") if p.is_file()):
        return False, "other files"
    for name in names:
        if name.endswith(".safetensors"):
            if not tensors_equal(load_file(ours / name), load_file(reference / name))[0]:
                return False, name
        elif name == "checkpoint.json":
            continue
        elif name.endswith(".json") and _without_timings(ours / name) != _without_timings(reference / name):
            return False, name
    return True, ""


def _without_timings(path: Path):
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "state" in data and isinstance(data["state"], dict) and "metrics" in data["state"]:
        for record in data["state"]["metrics"]:
            for key in TIMINGS:
                record.pop(key, None)
    return data


def losses(output_dir: Path) -> list[tuple]:
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return [tuple((k, v) for k, v in sorted(r.items()) if k not in TIMINGS) for r in records]


# ---- where to kill --------------------------------------------------------------------------------------------------


def plan_kill(rng, resumed_from: int, steps: int, startup_s: float, step_s: float, last: bool, index: int):
    """(aim, delay, within): what the kill waits for, the delay of a random kill, a pause once the awaited write
    started. Before the last step: the first two kills and a third of the others wait for a checkpoint save (of a step
    after the next, so every such attempt makes a step of progress), the rest come after a random delay of up to
    start-up and three steps (or what is left). From the last step on: the validation video, the final save, or
    start-up."""
    within = float(rng.uniform(0, 0.05))
    if last:
        return "end", 0.0, 0.0
    if resumed_from >= steps - 1:  # the last step, then the end (a random delay would rarely get past the step)
        return str(rng.choice(["validation video", "final model save", "start-up"])), rng.uniform(0, startup_s), within
    if resumed_from + 1 < steps and (rng.random() < SAVE_SHARE or index < 2):
        return "checkpoint save", 0.0, within
    return "random", float(rng.uniform(0, startup_s + min(3, steps - resumed_from) * step_s * 0.9)), 0.0


def kill_now(aim: str, attempt: Attempt, output_dir: Path, resumed_from: int, delay: float) -> bool:
    pid = attempt.pid
    if aim in ("random", "start-up"):
        return time.monotonic() - attempt.started >= delay
    if aim == "checkpoint save":
        saving = (re.match(rf"^\.checkpoint-(\d+)\.tmp-{pid}$", p.name) for p in output_dir.glob(".checkpoint-*"))
        return any(m and int(m[1]) > resumed_from + 1 for m in saving)
    if aim == "validation video":
        return any(f".tmp-{pid}-" in p.name for p in output_dir.glob("validation/.*"))
    if aim == "final model save":
        return any(output_dir.glob(f".staging.tmp-{pid}-*"))
    return False  # "end": runs to its end


# ---- the experiment -------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path) -> dict:
    steps = args.max_train_steps or args.kills + 2
    script = load_script() if args.start == "fork" else None
    flags = [*TINY_FLAGS, "--max_train_steps", str(steps)]
    rng = np.random.default_rng(args.seed)
    began = time.monotonic()

    # 1. The uninterrupted run, every checkpoint kept; its timings set the range of the random kill points
    straight = work / "straight"
    attempt = Attempt([*flags, "--output_dir", str(straight), "--checkpoints_total_limit", "0"], work / "straight.log",
                      args.start, script)  # fmt: skip
    first_checkpoint = None
    while attempt.poll() is None:
        if first_checkpoint is None and latest_step(straight) >= 1:
            first_checkpoint = time.monotonic() - attempt.started
        time.sleep(0.005)
    if attempt.poll() != 0:
        raise RuntimeError(f"the uninterrupted run failed: see {work / 'straight.log'}")
    total = time.monotonic() - attempt.started
    step_s = (total - first_checkpoint) / steps  # a step with its save (the final phase counted as one more step)
    startup_s = max(first_checkpoint - step_s, 0.0)

    # 2. The run killed again and again
    killed_dir = work / "killed"
    argv = [*flags, "--output_dir", str(killed_dir), "--checkpoints_total_limit", "2", "--resume_from_checkpoint",
            "latest"]  # fmt: skip
    kills, resumes, orphans, completed = [], [], [], 0
    for index in range(3 * args.kills + 1):
        resumed_from, last = latest_step(killed_dir), len(kills) == args.kills
        aim, delay, within = plan_kill(rng, resumed_from, steps, startup_s, step_s, last, len(kills))
        attempt = Attempt(argv, work / f"attempt-{index:03d}.log", args.start, script)
        watch = FfmpegWatch(attempt.pid)
        while attempt.poll() is None and not kill_now(aim, attempt, killed_dir, resumed_from, delay):
            time.sleep(0.002)
        if attempt.poll() is None:
            time.sleep(within)  # a random moment inside the write it waited for
        if attempt.poll() is not None:  # it ended before the kill: the run is complete
            watch.stop()
            if attempt.poll() != 0:
                raise RuntimeError(f"attempt {index} failed: see {work / f'attempt-{index:03d}.log'}")
            if last:
                break
            completed += 1  # more kills to come: the next attempts redo the end (validation, final save)
            continue
        attempt.kill()
        encoders = watch.stop()
        deadline = time.monotonic() + 2
        while any(is_running(e) for e in encoders) and time.monotonic() < deadline:
            time.sleep(0.02)
        orphans += [e for e in encoders if is_running(e)]
        writing = writes_in_progress(killed_dir, attempt.pid)
        kills.append({
            "aim": aim, "after_s": round(time.monotonic() - attempt.started, 3), "resumed_from": resumed_from,
            "latest_after": latest_step(killed_dir), "writing": writing, "ffmpeg": len(encoders),
        })  # fmt: skip
        # the checkpoint the next attempt resumes from, against the uninterrupted run's
        latest = latest_step(killed_dir)
        if latest:
            same, differing = checkpoints_equal(killed_dir / f"checkpoint-{latest}", straight / f"checkpoint-{latest}")
            resumes.append({"step": latest, "bitwise_equal": same, "differing": differing})

    # 3. The end: the final model, the losses, what is left in the folder
    reference = load_file(straight / "diffusion_pytorch_model.safetensors")
    final = load_file(killed_dir / "diffusion_pytorch_model.safetensors")
    weights_equal, tensors = tensors_equal(final, reference)
    config_equal = json.loads((killed_dir / "config.json").read_text()) == json.loads(
        (straight / "config.json").read_text()
    )
    during = [k for k in kills if k["writing"]]
    summary = {
        "kills": len(kills),
        "kills_during_checkpoint_save": sum("checkpoint save" in k["writing"] for k in kills),
        "kills_during_final_model_save": sum("final model save" in k["writing"] for k in kills),
        "kills_during_validation_video": sum("validation video" in k["writing"] for k in kills),
        "kills_writing_nothing": len(kills) - len(during),
        "kills_with_ffmpeg_running": sum(k["ffmpeg"] > 0 for k in kills),
        "orphan_ffmpeg": len(orphans),
        "resumes_checked": len(resumes),
        "resumes_bitwise_equal": sum(r["bitwise_equal"] for r in resumes),
        "final_tensors": tensors,
        "final_weights_bitwise_equal": weights_equal,
        "final_config_equal": config_equal,
        "losses_equal": losses(killed_dir) == losses(straight),
        "leftovers": leftovers(killed_dir),
        "attempts_that_completed_before_their_kill": completed,
        "max_train_steps": steps,
        "start": args.start,
        "seed": args.seed,
        "seconds": round(time.monotonic() - began, 1),
        "kill_log": kills,
    }
    summary["ok"] = bool(
        weights_equal
        and config_equal
        and summary["losses_equal"]
        and not orphans
        and not summary["leftovers"]
        and summary["resumes_bitwise_equal"] == len(resumes)
    )
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.start == "fork" and threading.active_count() > 1:
        raise RuntimeError("--start fork needs a process without threads (fork copies one thread only)")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="kill-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        summary = run(args, work)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return summary


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
