"""Training options the seed papers use (issue 36): the optimizer (AdamW, Adam, SGD with momentum), the plateau
schedule (lr / 10 whenever the val metric stops improving, Huix et al.) and its replay on the refit, colour jitter
and vertical flips in the augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radbench.progress import Reporter
from radbench.training.loop import Refit, TrainSettings, make_optimizer, train


def _settings(**changes) -> TrainSettings:
    values = dict(epochs=6, batch_size=4, lr=0.1, head_lr=0.1, weight_decay=0.0, layer_decay=1.0, warmup_epochs=0,
                  grad_clip=None, patience=None, device=torch.device("cpu"), precision="fp32", num_workers=0, seed=0)
    return TrainSettings(**{**values, **changes})


class _Pairs(torch.utils.data.Dataset):
    def __init__(self):
        self.x, self.y = torch.randn(16, 3), torch.randn(16, 1)

    def __len__(self):
        return 16

    def __getitem__(self, index):
        return self.x[index], self.y[index]


def _lrs(settings: TrainSettings, values: list[float] | None = None, stop_after=None) -> tuple[list[float], list]:
    """The lr of each epoch's last step, and the history, for a linear model on random pairs."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    scores = iter(values or [])
    result = train(model, [{"params": list(model.parameters()), "lr": settings.lr, "weight_decay": 0.0}],
                   _Pairs(), lambda out, target: ((out - target) ** 2).mean(), settings, Reporter(quiet=True), "test",
                   validate=(lambda m: next(scores)) if values is not None else None, stop_after=stop_after)
    return [record["lr"] for record in result.history], result.history


def test_plateau_divides_the_lr_by_ten_when_val_stops_improving_and_a_refit_replays_it():
    settings = _settings(schedule="plateau", plateau_patience=2)
    # val improves for 2 epochs, then stalls: after 2 stale epochs the lr drops; a new best resets the count
    lrs, history = _lrs(settings, [0.5, 0.6, 0.6, 0.55, 0.7, 0.7])
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01, 0.01])
    assert [record["lr_scale"] for record in history] == pytest.approx([1, 1, 1, 1, 0.1, 0.1])  # used in each epoch
    replayed, _ = _lrs(settings, None, Refit(5, [record["lr_scale"] for record in history]))
    assert replayed == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01])  # no val on a refit: the drops where they were
    cosine, _ = _lrs(_settings(), [0.5, 0.6, 0.6, 0.55, 0.7, 0.7])
    assert cosine[-1] < cosine[0] and not np.isclose(cosine[3], 0.01)  # the default decays smoothly


@pytest.mark.parametrize("name,kind,momentum", [("adamw", torch.optim.AdamW, None), ("adam", torch.optim.Adam, None),
                                                ("sgd", torch.optim.SGD, 0.9)])
def test_the_optimizer_key_picks_the_optimizer(name, kind, momentum):
    model = torch.nn.Linear(3, 1)
    optimizer = make_optimizer([{"params": list(model.parameters()), "lr": 0.1}], _settings(optimizer=name))
    assert type(optimizer) is kind
    if momentum is not None:
        assert optimizer.param_groups[0]["momentum"] == momentum


def test_colour_jitter_and_vertical_flip_are_applied():
    from radbench.training.augment import AugmentConfig, build_augment

    image = torch.linspace(0, 1, 3 * 16 * 16).reshape(3, 16, 16)
    flip = build_augment(AugmentConfig(crop_scale=None, hflip=False, vflip=True, rotation=0), 16)
    torch.manual_seed(1)
    outcomes = {bool(torch.equal(flip(image), image.flip(1))) for _ in range(20)}
    assert outcomes == {True, False}  # flipped half the time, upside down
    jitter = build_augment(AugmentConfig(crop_scale=None, hflip=False, rotation=0, color_jitter=(0.4, 0.4, 0, 0)), 16)
    torch.manual_seed(2)
    changed = jitter(image)
    assert changed.shape == image.shape and not torch.allclose(changed, image)
    assert AugmentConfig().model_dump() == {"crop_scale": (0.7, 1.0), "hflip": True, "vflip": False,
                                            "rotation": 10.0}  # unset: not in the dump, so job keys stay
