import re

import pytest
import yaml

from selfsup.config import Config, ConfigError, apply_overrides, iter_fields, option_help


def test_defaults_validate_and_round_trip_through_yaml(tmp_path):
    cfg = Config().validate()
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    again = Config.from_yaml(path)
    assert again == cfg


def test_overrides_parse_yaml_scalars_and_coerce_types():
    cfg = apply_overrides(
        Config(),
        [
            "train.batch_size=128",
            "optim.base_lr=1e-3",
            "views.mean=[0.5]",
            "optim.clip_grad=null",
            "backbone.width=1",
            "train.progress=false",
        ],
    )
    assert cfg.train.batch_size == 128
    assert cfg.optim.base_lr == pytest.approx(1e-3)
    assert cfg.views.mean == [0.5]
    assert cfg.optim.clip_grad is None
    assert isinstance(cfg.backbone.width, float) and cfg.backbone.width == 1.0
    assert cfg.train.progress is False


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        apply_overrides(Config(), ["train.batch_sise=3"])
    with pytest.raises(ConfigError, match="unknown option"):
        apply_overrides(Config(), ["nosection.key=1"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=abc", "must be an integer"),
        ("train.batch_size=2.5", "must be an integer"),
        ("train.progress=3", "true or false"),
        ("views.mean=0.5", "must be a list"),
        ("optim.base_lr=fast", "must be a number"),
        ("novalue", "key=value"),
    ],
)
def test_wrong_types_are_refused_with_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), [override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=1", "SimCLR needs at least 2 images"),
        ("simclr.temperature=0", "temperature must be > 0"),
        ("simclr.temperature=-0.1", "temperature must be > 0"),
        ("data.dataset=imagenet22k", "data.dataset='imagenet22k' is unknown"),
        ("method=swav", "method='swav' is unknown"),
        ("views.jitter_p=1.5", "probability"),
        ("data.dataset=folder", "needs data.data_dir"),
        ("optim.lr_scaling=cubic", "linear|sqrt|none"),
        ("views.blur_p=[0.5, 1.5]", "probabilities"),
    ],
)
def test_impossible_settings_fail_validation_with_the_fix(override, message):
    cfg = apply_overrides(Config(), [override])
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_invalid_yaml_and_missing_file_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Config.from_yaml(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        Config.from_yaml(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        Config.from_yaml(listy)


def test_every_option_has_help_and_appears_in_option_help():
    text = option_help()
    for key, field, _ in iter_fields():
        assert field.metadata.get("help"), f"{key} has no help text"
        assert key in text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method=moco", "moco.queue_size=64", "train.batch_size=128"], "queue must hold"),
        (["method=moco", "moco.temperature=0"], "temperature must be > 0"),
        (["method=moco", "train.batch_size=100", "moco.split_bn=8"], "divisible by moco.split_bn"),
        (["method=byol", "train.batch_size=1"], "byol needs at least 2"),
        (["method=byol", "byol.momentum_base=1.5"], "momentum_base must be in"),
        (["method=mae", "backbone.name=vit_tiny", "mae.mask_ratio=1.0"], "must be in (0, 1)"),
        (["method=mae", "backbone.name=vit_tiny", "mae.mask_ratio=0"], "nothing to reconstruct"),
        (["method=mae", "backbone.name=resnet18"], "needs a ViT backbone"),
        (["backbone.name=vit_tiny", "views.size=30", "backbone.patch_size=4"], "multiple of"),
    ],
)
def test_impossible_method_settings_name_the_fix(overrides, message):
    cfg = apply_overrides(Config(), overrides)
    with pytest.raises(ConfigError, match=re.escape(message)):
        cfg.validate()


def test_per_view_lists_accept_one_value_for_every_view():
    cfg = apply_overrides(Config(), ["views.blur_p=0", "views.solarize_p=[0.0, 0.2]"])
    assert cfg.views.blur_p == [0.0] and cfg.views.solarize_p == [0.0, 0.2]
