"""Leak mutants: apply each deliberate test-set leak to the code, run the given tests, and print whether the tests
catch it (KILLED) or not (SURVIVED). The source is restored after each mutant.

    python benchmarks/leak_mutants.py                      # each mutant against the test files that cover it
    python benchmarks/leak_mutants.py tests/test_leakage.py   # every mutant against the given test files"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = {
 "M1 logreg chooses C on test": ("radbench/protocols/logreg.py", [
   ('scores = fit.predict(inputs.features.get(feature_type, "val"))', 'scores = fit.predict(inputs.features.get(feature_type, "test"))'),
   ('value = inputs.metrics(inputs.targets["val"], scores)[0]', 'value = inputs.metrics(inputs.targets["test"], scores)[0]')]),
 "M2 kNN chooses k on test": ("radbench/protocols/knn.py", [
   ('sims, idx = nearest(train, inputs.features.get(feature_type, "val"), max(ks), inputs.device)', 'sims, idx = nearest(train, inputs.features.get(feature_type, "test"), max(ks), inputs.device)'),
   ('value = inputs.metrics(inputs.targets["val"], scores)[0]', 'value = inputs.metrics(inputs.targets["test"], scores)[0]')]),
 "M3 linear standardisation statistics include test": ("radbench/protocols/linear.py", [
   ('scaler = Standardizer(cfg.normalize == "standard", x)', 'scaler = Standardizer(cfg.normalize == "standard", torch.cat([x, torch.from_numpy(_inputs(inputs, feature_types, ["test"])[0]).to(device)]))')]),
 "M4 linear refit includes test": ("radbench/protocols/linear.py", [
   ('[lrs[l]], list(inputs.refit_splits),', '[lrs[l]], [*inputs.refit_splits, "test"],')]),
 "M5 logreg/kNN refit includes test": ("radbench/protocols/base.py", [
   ('for split in self.refit_splits])', 'for split in (*self.refit_splits, "test")])')]),
 "M6 fine-tuning validates on test": ("radbench/protocols/finetune.py", [
   ('return inputs.metrics(inputs.targets["val"], val_scores(model))', 'return inputs.metrics(inputs.targets["test"], predict(model, inputs.task, plain("test"), evaluation)[0])')]),
 "M9 segmentation validates on test": ("radbench/protocols/segmentation.py", [
   ('return mean_over_cases(evaluate(model, "val", distances=False)[0])["dice"]',
    'return mean_over_cases(evaluate(model, "test", distances=False)[0])["dice"]')]),
 "M7 few-shot refit adds val": ("radbench/protocols/few_shot.py", [
   ('refit_splits=("train",)', 'refit_splits=("train", "val")')]),
 "M8 selection picks the worst val": ("radbench/protocols/base.py", [
   ('if value is not None and not math.isnan(value) and value > best_value:', 'if value is not None and not math.isnan(value) and -value > best_value:'),
   ('best, best_value = index, value', 'best, best_value = index, -value')]),
 "M10 feature-cache key without the sample lists": ("radbench/features/provider.py", [
   ('"splits": {name: ids_digest(split.sample_ids) for name, split in dataset.splits.items()},', '')]),
 "M11 linear standardises each split with its own mean": ("radbench/protocols/linear.py", [
   ('return (x - self.mean) / self.std if self.enabled else x', 'return (x - x.mean(0)) / self.std if self.enabled else x')]),
 "M12 Dice 0 (not NaN) where the truth lacks the class": ("radbench/metrics/segmentation.py", [
   ('dice = np.where(true_sum > 0, 2 * overlap / (true_sum + pred_sum), np.nan)',
    'dice = np.where(true_sum + pred_sum > 0, 2 * overlap / (true_sum + pred_sum), np.nan)')]),
}
COVERING = {"M9": ["tests/test_segmentation_selection.py"], "M10": ["tests/test_feature_cache.py"], "M11": ["tests/test_protocols.py", "tests/test_leakage.py"],
            "M12": ["tests/test_segmentation.py"]}
for name, (path, reps) in MUTANTS.items():
    tests = sys.argv[1:] or COVERING.get(name.split()[0], ["tests/test_leakage.py"])
    p = ROOT / path
    original = p.read_text()
    s = original
    for a, b in reps:
        assert a in s, (name, a)
        s = s.replace(a, b)
    p.write_text(s)
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *tests],
                           capture_output=True, text=True, cwd=ROOT)
        last = r.stdout.strip().splitlines()[-1]
        failed = [line.split(" - ")[0].removeprefix("FAILED ") for line in r.stdout.splitlines()
                  if line.startswith("FAILED")]
        print(f"{name}: {'KILLED' if r.returncode else 'SURVIVED'} ({last}) {failed[:1]}")
    finally:
        p.write_text(original)
