"""The README says what runs: its Python examples run as written, its settings table is whole."""

import contextlib
import dataclasses
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run_as_written(tmp_path, monkeypatch):
    """Both examples, in order, in one namespace (the second continues the first), in a fresh
    folder: the first writes the shapes data in CS231n's layout and trains on 50 captions."""
    blocks = _python_blocks()
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "datasets" / "coco_captioning" / "coco2014_captions.h5").is_file()
    loss = namespace["solver"].loss_history
    assert len(loss) == 100  # 50 epochs of 50 captions in batches of 25
    assert sum(loss[-10:]) / 10 < 0.5 * sum(loss[:10]) / 10  # it learns the 50 captions
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("(Iteration 1 / 100) loss:")
    assert namespace["best"].tokens.shape[0] == 2
    printed_captions = [line for line in lines if line.startswith("[")]
    assert len(printed_captions) == 2  # the sampled captions, then the beam search's


def test_readme_settings_table_names_every_config_key_and_its_flags():
    from rnncap import config as cfg
    from rnncap.cli import build_parser

    text = README.read_text()
    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    flags_of = {a.dest: a.option_strings for a in train._actions}
    for part in dataclasses.fields(cfg.RunConfig):
        for f in dataclasses.fields(type(getattr(cfg.RunConfig(), part.name))):
            key = f"{part.name}.{f.name}"
            flags = ", ".join(f"`{flag}`" for flag in flags_of[key]
                              if not flag.startswith("--no-"))
            row = f"| `{key}` | {flags} |"
            assert row in text, f"README.md's settings table lacks the row starting {row}"
