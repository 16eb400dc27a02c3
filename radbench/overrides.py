"""Command-line overrides of a study file, applied to its raw mapping before validation: run a shipped study
unchanged on another machine (`--data-root`), or shrunk to minutes (`--limit`, `--backbone`, `--image-size`,
`--seeds`, `--epochs`) to check it end to end before the real run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Overrides:
    output_dir: str | None = None
    limit: int | None = None  # images per dataset (each adapter's `limit`)
    backbones: tuple[str, ...] = ()  # replace the study's backbones
    weights: str | None = None  # for the replacing backbones: hub | none | a checkpoint path (none: a transformer
    # head's DeiT start is dropped too, the head then the small random one)
    image_size: int | None = None  # the study's, the backbones' and the protocols' image sizes
    seeds: tuple[int, ...] = ()
    epochs: int | None = None  # an upper bound for every protocol that trains for epochs
    notes: list[str] = field(default_factory=list, compare=False, hash=False)  # what apply changed of the study's settings

    @property
    def shrinks(self) -> bool:
        """Fewer images or smaller backbones than the study names: what they cannot serve is dropped, not an error."""
        return self.limit is not None or bool(self.backbones)

    def apply(self, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        if self.output_dir is not None:
            raw["output_dir"] = self.output_dir
        if self.seeds:
            raw["seeds"] = list(self.seeds)
        if self.image_size is not None:
            raw["image_size"] = self.image_size
        if self.backbones:
            before = len(raw["backbones"]) if isinstance(raw.get("backbones"), list) else 0
            raw["backbones"] = [{"name": name, **({"weights": self.weights} if self.weights else {})}
                                for name in self.backbones]
            self.notes.append(f"backbones: the study's {before} replaced by {', '.join(self.backbones)} (--backbone)"
                              + (" with random weights (--weights none): their numbers measure an untrained "
                                 "architecture, and no published number is comparable" if self.weights == "none"
                                 else ""))
        elif self.image_size is not None and isinstance(raw.get("backbones"), list):
            raw["backbones"] = [{**b, "image_size": self.image_size} if isinstance(b, dict) and "image_size" in b
                                else b for b in raw["backbones"]]
        if self.limit is not None and isinstance(raw.get("datasets"), list):
            raw["datasets"] = [{**d, "limit": self.limit} if isinstance(d, dict) else d for d in raw["datasets"]]
            self.notes.append(f"datasets: at most {self.limit} images each (--limit)")
        if isinstance(raw.get("protocols"), list):
            raw["protocols"] = [self._protocol(p, i) for i, p in enumerate(raw["protocols"])]
        return raw

    def _protocol(self, item: Any, index: int = 0) -> Any:
        from radbench.presets import apply_preset
        from radbench.protocols import PROTOCOLS

        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            return item
        (kind, body), = item.items()
        if kind not in PROTOCOLS or not isinstance(body or {}, dict):
            return item  # validation names the problem
        try:
            body = apply_preset(kind, dict(body or {}))
        except ValueError:
            return item
        if self.backbones:  # the study's backbones are replaced: a protocol's restriction to them goes too
            body.pop("backbones", None)
        fields = PROTOCOLS.get(kind).config.model_fields
        where = f"protocols[{index}].{kind}" + (f" ({body['name']})" if body.get("name") else "")
        if self.epochs is not None and "epochs" in fields:
            default = fields["epochs"].default
            if body.get("epochs", default) > self.epochs:
                self.notes.append(f"{where}: {body.get('epochs', default)} epochs cut to {self.epochs} (--epochs)")
            body["epochs"] = min(self.epochs, body.get("epochs", default))
        if self.weights == "none" and body.get("init", "random") != "random" and "init" in fields:
            self.notes.append(f"{where}: init {body['init']} (a pretrained DeiT) replaced by a small random head "
                              "(--weights none)")
            body["init"] = "random"  # nothing pretrained: not the DeiT a transformer head may start from either
            body.pop("init_weights", None)
        if self.image_size is not None and body.get("image_size") is not None:
            body["image_size"] = self.image_size
        return {kind: body}
