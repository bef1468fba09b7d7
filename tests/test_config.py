import json

import pytest

from rnncap.config import (DEMO, ConfigError, RunConfig, from_dict, load_config, to_dict,
                           with_overrides)


def test_defaults_are_cs231n_model_defaults():
    m = RunConfig().model
    assert (m.cell_type, m.wordvec_dim, m.hidden_dim, m.dtype, m.image_every_step, m.init) == \
        ("rnn", 128, 128, "float32", False, "cs231n")
    t = RunConfig().train
    assert (t.lr_schedule, t.lr_decay) == ("step", 0.995)


def test_round_trip_through_json():
    assert from_dict(RunConfig, json.loads(json.dumps(to_dict(DEMO)))) == DEMO


def test_overrides_keep_other_fields():
    c = with_overrides(DEMO, {"train": {"batch_size": 8}, "model": {"cell_type": "rnn"}})
    assert c.train.batch_size == 8 and c.model.cell_type == "rnn"
    assert c.train.learning_rate == DEMO.train.learning_rate and c.model.hidden_dim == DEMO.model.hidden_dim


def test_int_accepted_for_float_but_not_string_for_int():
    assert with_overrides(DEMO, {"train": {"learning_rate": 1}}).train.learning_rate == 1.0
    with pytest.raises(ConfigError, match=r"batch_size must be int, got str"):
        with_overrides(DEMO, {"train": {"batch_size": "8"}})
    with pytest.raises(ConfigError, match=r"image_every_step must be bool"):
        with_overrides(DEMO, {"model": {"image_every_step": 1}})


@pytest.mark.parametrize("bad, words", [
    ({"train": {"batch_sz": 3}}, ["unknown key", "batch_sz", "batch_size"]),
    ({"trian": {}}, ["unknown key", "trian"]),
    ({"model": {"cell_type": "gru"}}, ["cell_type", "rnn, lstm", "gru"]),
    ({"train": {"learning_rate": -1.0}}, ["learning_rate", "> 0"]),
    ({"data": {"format": "csv"}}, ["format", "csv"]),
    ({"model": {"init": "xavier"}}, ["model.init", "cs231n, pytorch", "xavier"]),
    ({"train": {"lr_schedule": "linear"}}, ["train.lr_schedule", "step, cosine", "linear"]),
    ({"train": 3}, ["train", "JSON object"]),
])
def test_bad_values_name_the_field(bad, words):
    with pytest.raises(ConfigError) as err:
        with_overrides(RunConfig(), bad)
    for w in words:
        assert w in str(err.value)


def test_load_config_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"model": {"hidden_dim": 64}}))
    assert load_config(p).model.hidden_dim == 64
    p.write_text("{oops")
    with pytest.raises(ConfigError, match="c.json is not valid JSON"):
        load_config(p)
    p.write_text(json.dumps({"model": {"hiden_dim": 64}}))
    with pytest.raises(ConfigError, match=r"c.json: model: unknown key\(s\) hiden_dim"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.json")


def test_shapes_train_images_is_for_the_shapes_format_only():
    c = with_overrides(DEMO, {"data": {"shapes_train_images": 123}})
    assert c.data.shapes_train_images == 123
    with pytest.raises(ConfigError, match="data.shapes_train_images applies to format 'shapes' only"):
        with_overrides(RunConfig(), {"data": {"format": "karpathy", "shapes_train_images": 5}})
    with pytest.raises(ConfigError, match=r"data.shapes_train_images must be > 0"):
        with_overrides(DEMO, {"data": {"shapes_train_images": 0}})


def test_shapes_train_images_reaches_the_generator(monkeypatch):
    import rnncap.data
    from rnncap.run import load_run_data

    seen = {}
    monkeypatch.setattr(rnncap.data, "load_data", lambda path, fmt, **kw: seen.update(kw, fmt=fmt))
    load_run_data(with_overrides(DEMO, {"data": {"path": "x", "shapes_train_images": 77}}), False)
    assert seen["fmt"] == "shapes" and seen["num_train"] == 77
    seen.clear()
    load_run_data(with_overrides(DEMO, {"data": {"path": "x", "shapes_train_images": None}}), False)
    assert "num_train" not in seen


def test_shapes_options_reach_the_generator_and_extractor_and_are_checked(monkeypatch):
    import rnncap.data
    from rnncap.run import load_run_data

    seen = {}
    monkeypatch.setattr(rnncap.data, "load_data", lambda path, fmt, **kw: seen.update(kw, fmt=fmt))
    load_run_data(with_overrides(DEMO, {"data": {"path": "x", "shapes_train_two_objects": 0.8,
                                                 "shapes_train_same_colour": 0.25}}), False)
    assert seen["train_object_weights"] == pytest.approx((0.2, 0.8))
    assert seen["train_same_colour"] == 0.25
    assert "extractor_options" not in seen
    seen.clear()
    load_run_data(with_overrides(DEMO, {"data": {"path": "x", "shapes_feature_stride": 1}}), False)
    assert seen["extractor_options"] == {"stride": 1}
    seen.clear()
    load_run_data(with_overrides(DEMO, {"data": {"path": "x", "shapes_train_two_objects": None}}), False)
    assert "train_object_weights" not in seen and "train_same_colour" not in seen
    with pytest.raises(ConfigError, match=r"data.shapes_train_two_objects is a probability.*1.2"):
        with_overrides(DEMO, {"data": {"shapes_train_two_objects": 1.2}})
    with pytest.raises(ConfigError, match="data.shapes_train_same_colour applies to format 'shapes'"):
        with_overrides(RunConfig(), {"data": {"format": "karpathy", "shapes_train_same_colour": 0.5}})
    with pytest.raises(ConfigError, match="data.shapes_feature_stride must be > 0"):
        with_overrides(DEMO, {"data": {"shapes_feature_stride": 0}})
