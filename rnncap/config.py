"""Run configuration: frozen dataclasses, the one place where defaults live.

A run is described by a :class:`RunConfig` made of three parts — what data, what model, how to
train — and the whole of it is written into every checkpoint. Configs come from three places, in
increasing priority: the defaults below, a JSON config file, command-line flags. All three go
through :func:`from_dict`, which refuses unknown keys and wrong types with a message naming the
field, so a typo never silently falls back to a default.

The model defaults are CS231n's (`CaptioningRNN`'s own defaults); :data:`DEMO` is the preset the
`rnncap demo` job uses on the built-in shapes dataset, and :data:`PRESETS` names the presets
`rnncap train --preset NAME` starts from.

This module knows field names, types and defaults. It does not know how a model is built, how data
is read or how training runs; the lists of choices (formats, levels, cells, dtypes, update rules,
decoding methods) come from the modules that implement them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Each choice list is defined where its choices are implemented, and only named here.
from rnncap.data import FORMATS
from rnncap.data.vocab import LEVELS
from rnncap.evaluate import METHODS
from rnncap.attention_model import MODEL_KINDS as MODELS
from rnncap.model import CELL_TYPES as CELLS
from rnncap.model import DTYPES
from rnncap.model import INITS
from rnncap.optim import UPDATE_RULES
from rnncap.solver import LR_SCHEDULES

__all__ = [
    "ConfigError", "DataConfig", "ModelConfig", "TrainConfig", "RunConfig", "DecodeConfig", "DEMO",
    "DEMO_DECODE", "PRESETS",
    "from_dict", "to_dict", "load_config", "with_overrides",
]


class ConfigError(ValueError):
    """A config file or flag has an unknown key, a wrong type or a value out of range."""


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how captions become token arrays."""

    path: str | None = field(default=None, metadata={
        "help": "data folder; with --format shapes, the cache folder the built-in dataset is "
                "generated into (default there: .cache/rnncap/shapes)"})
    format: str | None = field(default=None, metadata={"help": 'data format; default: detect from the folder'})
    features: str | None = field(default=None, metadata={"help": "features file (karpathy: .npy/.h5/.mat, "
                                                                 "one row per image; coco: .npz/.h5 keyed by "
                                                                 "image id); default: the one in the data folder"})
    level: str = field(default="word", metadata={"help": "caption tokens: 'word' or 'char'"})
    max_length: int | None = field(default=None, metadata={"help": "tokens between <START> and <END>; default: the loader's (15 words, 80 characters)"})
    min_count: int = field(default=1, metadata={"help": 'words seen fewer times in training captions become <UNK>'})
    max_train: int | None = field(default=None, metadata={"help": 'keep only this many training captions; default: all'})
    shapes_train_images: int | None = field(default=None, metadata={"help": "with --format shapes: training pictures the generator makes (default: its 10,000; the cache folder is keyed by it)"})
    shapes_train_two_objects: float | None = field(default=None, metadata={"help": "with --format shapes: the share of training pictures with two objects (default: the generator's 0.5; validation and test pictures keep 0.5)"})
    shapes_feature_stride: int | None = field(default=None, metadata={"help": "with --format shapes: the stride of the built-in extractor's convolution (default: its 2; 1 reads small shapes better for about 3x the feature time)"})
    shapes_train_same_colour: float | None = field(default=None, metadata={"help": "with --format shapes: the probability that a training picture's objects all get one colour, on top of the chance draw (default: none; validation and test pictures keep the chance draw)"})

    def __post_init__(self):
        if self.path is not None and not self.path.strip():
            raise ConfigError("data.path must name a folder, got an empty string")
        _choice("data.format", self.format, FORMATS, allow_none=True)
        _choice("data.level", self.level, LEVELS)
        _positive("data.max_length", self.max_length, allow_none=True)
        _positive("data.min_count", self.min_count)
        _positive("data.max_train", self.max_train, allow_none=True)
        _positive("data.shapes_train_images", self.shapes_train_images, allow_none=True)
        _positive("data.shapes_feature_stride", self.shapes_feature_stride, allow_none=True)
        for name in ("shapes_train_images", "shapes_train_two_objects", "shapes_train_same_colour",
                     "shapes_feature_stride"):
            if getattr(self, name) is not None and self.format != "shapes":
                raise ConfigError(f"data.{name} applies to format 'shapes' only; the format "
                                  f"is {self.format!r}")
        _probability("data.shapes_train_two_objects", self.shapes_train_two_objects)
        _probability("data.shapes_train_same_colour", self.shapes_train_same_colour)


@dataclass(frozen=True)
class ModelConfig:
    """The model: `CaptioningRNN`'s constructor arguments (CS231n's defaults), or with
    kind 'attention' `AttentionCaptioner`'s (an LSTM over grid features; cell_type and
    image_every_step do not apply to it)."""

    kind: str = field(default="rnn", metadata={"help": "'rnn': CaptioningRNN on one feature vector per image (cell from --cell); 'attention': soft attention over grid features (Show, Attend and Tell)"})
    cell_type: str = field(default="rnn", metadata={"help": 'recurrent cell'})
    wordvec_dim: int = field(default=128, metadata={"help": 'word vector size W'})
    hidden_dim: int = field(default=128, metadata={"help": 'hidden state size H'})
    image_every_step: bool = field(default=False, metadata={"help": 'feed the image features at every time step, not only into h0 (beyond CS231n)'})
    dtype: str = field(default="float32", metadata={"help": 'parameter and activation dtype'})
    attention_dim: int | None = field(default=None, metadata={"help": "attention model: size A of the attention's hidden layer (default: hidden_dim)"})
    doubly_stochastic: float = field(default=0.0, metadata={"help": "attention model: lambda of the doubly stochastic attention penalty (0: none)"})
    init: str = field(default="cs231n", metadata={"help": "weight initialisation: 'cs231n' (small word vectors) or 'pytorch' (PyTorch's defaults for the same layers; beyond CS231n)"})

    def __post_init__(self):
        _choice("model.kind", self.kind, MODELS)
        _choice("model.cell_type", self.cell_type, CELLS)
        _positive("model.attention_dim", self.attention_dim, allow_none=True)
        if self.doubly_stochastic < 0:
            raise ConfigError(f"model.doubly_stochastic must be >= 0, got {self.doubly_stochastic}")
        _choice("model.dtype", self.dtype, DTYPES)
        _choice("model.init", self.init, INITS)
        _positive("model.wordvec_dim", self.wordvec_dim)
        _positive("model.hidden_dim", self.hidden_dim)


@dataclass(frozen=True)
class TrainConfig:
    """How the solver trains and how training is watched."""

    update_rule: str = field(default="adam", metadata={"help": 'optimizer'})
    learning_rate: float = field(default=5e-3, metadata={"help": 'initial learning rate'})
    lr_decay: float = field(default=0.995, metadata={"help": 'learning rate multiplier after every epoch'})
    lr_schedule: str = field(default="step", metadata={"help": "'step': only lr_decay after every epoch (CS231n); 'cosine': also half a cosine from the learning rate down to 0 over the whole run (beyond CS231n)"})
    batch_size: int = field(default=100, metadata={"help": 'captions per minibatch'})
    num_epochs: int = field(default=10, metadata={"help": 'epochs of iterations_per_epoch = captions // batch_size minibatches'})
    grad_clip: float | None = field(default=None, metadata={"help": 'clip the global gradient norm to this; default: no clipping'})
    seed: int = field(default=0, metadata={"help": 'seed of the model initialisation and the minibatch order'})
    val_images: int = field(default=200, metadata={"help": 'fixed subset of val images decoded and scored after every epoch; 0: none'})
    keep_checkpoints: int = field(default=2, metadata={"help": 'epoch checkpoints kept in the run folder'})
    row_groups: int | None = field(default=None, metadata={"help": 'split every batch into this many row groups whose gradients are computed on threads and summed; the rounding depends on it, so a resumed run keeps its own; default: the thread count when the run starts'})

    def __post_init__(self):
        _choice("train.update_rule", self.update_rule, UPDATE_RULES)
        _choice("train.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _positive("train.learning_rate", self.learning_rate)
        _positive("train.lr_decay", self.lr_decay)
        _positive("train.batch_size", self.batch_size)
        _positive("train.num_epochs", self.num_epochs)
        _positive("train.grad_clip", self.grad_clip, allow_none=True)
        _positive("train.keep_checkpoints", self.keep_checkpoints)
        _positive("train.row_groups", self.row_groups, allow_none=True)
        if self.val_images < 0:
            raise ConfigError(f"train.val_images must be >= 0, got {self.val_images}")
        if self.seed < 0:  # NumPy's generators take non-negative seeds only
            raise ConfigError(f"train.seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class DecodeConfig:
    """How a trained model's captions are decoded for scoring (`rnncap demo`'s test split)."""

    method: str = field(default="greedy", metadata={"help": "'greedy' or 'beam'"})
    beam_size: int = field(default=3, metadata={"help": "beam width for method 'beam'"})

    def __post_init__(self):
        _choice("decode.method", self.method, METHODS)
        _positive("decode.beam_size", self.beam_size)


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to reproduce a training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _choice(name, value, choices, allow_none=False):
    if value is None and allow_none:
        return
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _positive(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"{name} must be > 0 and finite, got {value!r}")


def _probability(name, value):
    if value is not None and not 0 <= value <= 1:
        raise ConfigError(f"{name} is a probability, between 0 and 1; got {value!r}")


def _check_type(name: str, value: Any, annotation: Any) -> Any:
    """Return `value` if it fits `annotation` (int is accepted where float is expected)."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    wanted = " or ".join("null" if o is type(None) else o.__name__ for o in options)
    raise ConfigError(f"{name} must be {wanted}, got {type(value).__name__} {value!r}")


def from_dict(cls, data: dict, where: str = "config", base=None):
    """Build a config dataclass from a (possibly partial) dict, refusing unknown keys and bad types.

    Args:
        cls: the dataclass to build (RunConfig or one of its parts).
        data: field values; nested dicts for the parts of a RunConfig.
        where: a name for the source, used in error messages (a file name or "flags").
        base: an instance whose values fill the fields `data` does not give (default: cls()).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    base = base if base is not None else cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        shown = [k if k.isprintable() and k.strip() == k and k else repr(k) for k in unknown]
        raise ConfigError(f"{where}: unknown key(s) {', '.join(shown)}; "
                          f"known keys are {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        if name not in data:
            continue
        current = getattr(base, name)
        if dataclasses.is_dataclass(current):
            values[name] = from_dict(type(current), data[name], f"{where}: {name}", current)
        else:
            values[name] = _check_type(f"{where}: {name}", data[name], hints[name])
    try:
        return dataclasses.replace(base, **values)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def to_dict(config) -> dict:
    """The config as plain JSON-able dicts."""
    return dataclasses.asdict(config)


def with_overrides(config: RunConfig, overrides: dict, where: str = "flags") -> RunConfig:
    """Apply {'train': {...}, 'model': {...}, 'data': {...}} on top of `config`."""
    return from_dict(RunConfig, overrides, where, base=config)


def load_config(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    """Read a JSON config file (any subset of RunConfig's fields) on top of `base`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read as text: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"config file {path} is not valid JSON: {err}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is JSON nested too deeply to read") from None
    return from_dict(RunConfig, data, f"config file {path}", base=base)


#: The `rnncap demo` preset: an LSTM that sees the image at every step, sized so that data and
#: training on the built-in shapes dataset fit the demo's time budget on 2 cores. Beyond CS231n's
#: recipe it starts from PyTorch's initialisation (word vectors N(0, 1): training moves faster
#: from the first epoch), lets the learning rate fall along half a cosine to 0 over the run
#: instead of x0.8 per epoch, and trains on 20,000 generated pictures for 3 epochs, nine in ten
#: of them with two objects: one-object pictures are described right almost always, and what is
#: left to learn is binding each shape to its place when there are two (validation and test
#: pictures keep the generator's even draw). docs/results.md measures what each step adds to
#: the captions' truth.
DEMO = RunConfig(
    data=DataConfig(format="shapes", shapes_train_images=20000, shapes_train_two_objects=0.9),
    model=ModelConfig(cell_type="lstm", wordvec_dim=128, hidden_dim=256, image_every_step=True,
                      init="pytorch"),
    train=TrainConfig(update_rule="adam", learning_rate=4e-3, lr_decay=1.0, lr_schedule="cosine",
                      batch_size=64, num_epochs=3, grad_clip=5.0, val_images=200,
                      # One row group whatever the machine's cores: the demo's results then do
                      # not depend on the core count (row groups change the rounding), and its
                      # small model trains no faster in two groups (docs/performance.md).
                      row_groups=1),
)

#: Named presets for `rnncap train --preset NAME` (listed by `rnncap train --help`).
PRESETS = {"shapes-demo": DEMO}
PRESET_HELP = {"shapes-demo": "what `rnncap demo` trains on the built-in shapes dataset"}

#: How `rnncap demo` decodes the test split it reports (its --method/--beam-size defaults): beam
#: search of width 5, whose captions are more often true than greedy ones (docs/results.md).
DEMO_DECODE = DecodeConfig(method="beam", beam_size=5)
