"""`radbench report` at the seed studies' scale (issue 26): a synthetic store shaped like dinov2-radiology on NIH
ChestX-ray14 + CheXpert — backbones x protocols (few-shot points with repeats) x seeds on a 25 596-image NIH test
split (about 9 images a patient) and a 234-image CheXpert one, 14 findings each, scores with a per-backbone skill
and per-finding prevalence — then the report's wall time and peak memory, and the store's size.

    python benchmarks/report_scale.py                      # the full shape: 1 728 jobs
    python benchmarks/report_scale.py --backbones 2 --scale 0.1 --resamples 200   # a quick slice
    python benchmarks/report_scale.py --backbones 2 --scale 0.1 --again --then-add 10   # cached, incremental

Prints what it measured, nothing else; the store is written once per shape and reused."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis", "Hernia",
            "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax")
PREVALENCE = (0.10, 0.03, 0.04, 0.02, 0.12, 0.02, 0.015, 0.002, 0.18, 0.05, 0.06, 0.03, 0.013, 0.05)
PLAIN = ("knn", "linear", "logreg", "finetune", "lora", "bitfit", "transformer_head")
FEW_SHOT = (1, 2, 4, 8, 16)  # each with REPEATS draws per seed
REPEATS = 5
TEST_SIZES = {"nih": 25_596, "chexpert": 234}


def write_store(folder: Path, backbones: int, seeds: int, scale: float) -> int:
    from radbench.results import JobRecord, ResultsStore

    store = ResultsStore(folder / "results.sqlite")
    done = store.finished_keys()
    rng = np.random.default_rng(0)
    jobs = 0
    for dataset, size in TEST_SIZES.items():
        n = max(60, int(size * scale)) if dataset == "nih" else size
        targets = (rng.random((n, len(FINDINGS))) < np.array(PREVALENCE)).astype(np.float32)
        patients = [f"{dataset}-p{i // 9:05d}" for i in range(n)]
        samples = [f"{dataset}-{i:06d}" for i in range(n)]
        for b in range(backbones):
            skill = 0.6 + 0.6 * b / max(1, backbones - 1)
            labels = [(p, p, 0) for p in PLAIN] + [(f"few_shot@{k}shot", "few_shot", r) for k in FEW_SHOT
                                                   for r in range(REPEATS)]
            for label, protocol, repeat in labels:
                for seed in range(seeds):
                    key = f"{dataset}-{b:02d}-{label}-{seed}-{repeat}"
                    jobs += 1
                    if key in done:
                        continue
                    noise = rng.normal(size=targets.shape)
                    scores = 1 / (1 + np.exp(-(skill * (2 * targets - 1) + noise - 1.5)))
                    config = {"backbone": {"name": f"backbone_{b:02d}", "weights": "none"},
                              "dataset": {"name": dataset, "task": "multilabel"},
                              "protocol": {"type": protocol}, "seed": seed, "repeat": repeat}
                    store.save(JobRecord(
                        key=key, study="scale", backbone=f"backbone_{b:02d}", dataset=dataset, protocol=label,
                        protocol_type=protocol, seed=seed, repeat=repeat, task="multilabel", config=config,
                        selected={}, candidates=[], details={}, timings={}, feature_cache=None, val_metrics={},
                        test_metrics={}, class_names=FINDINGS, sample_ids=samples, test_targets=targets,
                        test_scores=scores, extra_metrics={}, patient_ids=patients))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/radbench-report-scale"))
    parser.add_argument("--backbones", type=int, default=9)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of NIH's 25 596 test images")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--again", action="store_true",
                        help="then time a second report with nothing changed (the statistics cached by the first)")
    parser.add_argument("--then-add", type=int, default=0, help="then store N more jobs and time the report again")
    parser.add_argument("--screenshot", type=Path, help="then open the page in headless Chromium, time it, save this PNG")
    args = parser.parse_args()
    folder = args.out / f"b{args.backbones}-s{args.seeds}-x{args.scale:g}"
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    jobs = write_store(folder, args.backbones, args.seeds, args.scale)
    print(f"store: {jobs} jobs, {(folder / 'results.sqlite').stat().st_size / 2**30:.2f} GiB "
          f"(written or found in {time.perf_counter() - start:.0f} s)")
    timed_report(folder, args.resamples, "report")
    if args.again:
        timed_report(folder, args.resamples, "report again, nothing changed")
    if args.then_add:
        add_jobs(folder, args.then_add, args.scale)
        timed_report(folder, args.resamples, f"report after {args.then_add} new jobs")
    if args.screenshot:
        timed_screenshot(folder / "report" / "index.html", args.screenshot)


def timed_screenshot(page: Path, png: Path) -> None:
    """The page opened and drawn by headless Chromium (the browser's start included), as a user would open it."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("--screenshot needs Chromium (apt install chromium)")
    start = time.perf_counter()
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1400,2400", f"--screenshot={png.resolve()}", page.resolve().as_uri()],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    print(f"page ({page.stat().st_size / 2**20:.1f} MB) opened and drawn by headless Chromium in "
          f"{time.perf_counter() - start:.2f} s: {png}")


def timed_report(folder: Path, resamples: int, label: str) -> None:
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "radbench", "report", str(folder), "--resamples", str(resamples),
                              "--patch-images", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"radbench report failed (status {status})")
    print(f"{label} ({resamples} resamples): {time.perf_counter() - start:.1f} s, "
          f"peak {usage.ru_maxrss / 2**20:.2f} GiB")  # KiB -> GiB


def add_jobs(folder: Path, count: int, scale: float) -> None:
    """`count` more jobs of a new backbone on the NIH split (its plain protocols, then further seeds)."""
    from radbench.results import JobRecord, ResultsStore

    store = ResultsStore(folder / "results.sqlite")
    rng = np.random.default_rng(1)
    n = max(60, int(TEST_SIZES["nih"] * scale))
    _, samples, targets, _ = store.predictions(store.jobs().query("dataset == 'nih'").key.iloc[0])
    patients = store.patient_ids(store.jobs().query("dataset == 'nih'").key.iloc[0])
    assert len(samples) == n
    for i in range(count):
        protocol, seed = PLAIN[i % len(PLAIN)], i // len(PLAIN)
        noise = rng.normal(size=targets.shape)
        scores = 1 / (1 + np.exp(-(0.9 * (2 * targets - 1) + noise - 1.5)))
        store.save(JobRecord(
            key=f"nih-new-{protocol}-{seed}", study="scale", backbone="backbone_new", dataset="nih",
            protocol=protocol, protocol_type=protocol, seed=seed, repeat=0, task="multilabel",
            config={"backbone": {"name": "backbone_new", "weights": "none"}, "seed": seed}, selected={},
            candidates=[], details={}, timings={}, feature_cache=None, val_metrics={}, test_metrics={},
            class_names=FINDINGS, sample_ids=samples, test_targets=np.asarray(targets), test_scores=scores,
            extra_metrics={}, patient_ids=patients))


if __name__ == "__main__":
    main()
