import re
import subprocess
import sys
import typing
import warnings
from pathlib import Path

import pytest
import yaml

from selfsup.cli import main
from selfsup.config import (
    METHOD_SECTIONS,
    METHODS,
    Config,
    ConfigError,
    MethodName,
    apply_overrides,
    iter_fields,
    option_help,
)

CONFIGS = Path(__file__).parents[1] / "configs"


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


def test_progress_is_tri_state_and_old_true_false_configs_load(tmp_path):
    assert Config().train.progress is None  # a bar on a terminal, plain lines otherwise
    for text, want in (("true", True), ("false", False), ("null", None)):
        path = tmp_path / "c.yaml"
        path.write_text(f"train:\n  progress: {text}\n")
        assert Config.from_yaml(path).train.progress is want
    assert apply_overrides(Config(), ["train.progress_every_s=0"]).train.progress_every_s == 0.0
    with pytest.raises(ConfigError, match=r"train\.progress_every_s must be >= 0"):
        apply_overrides(Config(), ["train.progress_every_s=-1"])


def test_compile_is_true_false_or_auto_and_other_values_are_refused_naming_the_key(tmp_path):
    assert Config().train.compile == "auto"
    path = tmp_path / "c.yaml"
    for text, want in (("true", True), ("false", False), ("auto", "auto")):
        assert apply_overrides(Config(), [f"train.compile={text}"]).train.compile == want
        path.write_text(f"train:\n  compile: {text}\n")
        assert Config.from_yaml(path).train.compile == want
    for bad, shown in (("sometimes", "'sometimes'"), ("Auto", "'Auto'"), ("1", "1"), ("0", "0")):
        with pytest.raises(ConfigError) as info:
            apply_overrides(Config(), [f"train.compile={bad}"])
        assert str(info.value) == f"train.compile must be true, false or auto, got {shown}"
    cfg = Config()
    with pytest.raises(ConfigError, match=r"train\.compile must be true, false or auto, got None"):
        cfg.train.compile = None  # type: ignore[assignment]
    assert "train.compile='auto'  (true|false|auto)" in option_help()


def test_yaml_1_1_exponents_and_ints_are_read_as_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  base_lr: 1e-3\n  weight_decay: 0\n")  # '1e-3' is a YAML 1.1 string
    cfg = Config.from_yaml(path)
    assert cfg.optim.base_lr == pytest.approx(1e-3) and isinstance(cfg.optim.weight_decay, float)


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        apply_overrides(Config(), ["train.batch_sise=3"])
    with pytest.raises(ConfigError, match="unknown option"):
        apply_overrides(Config(), ["nosection.key=1"])


def test_nearest_name_is_suggested_in_yaml_overrides_and_python(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  base_lr: 0.1\ntrain:\n  epoch: 3\n")
    with pytest.raises(
        ConfigError, match=r"unknown option 'train\.epoch'; did you mean train\.epochs"
    ):
        Config.from_yaml(path)
    with pytest.raises(
        ConfigError, match=r"'optim\.weight_decy'; did you mean optim\.weight_decay"
    ):
        apply_overrides(Config(), ["optim.weight_decy=0.1"])
    cfg = Config()
    with pytest.raises(ConfigError, match=r"'dino\.out_dm'; did you mean dino\.out_dim"):
        cfg.dino.out_dm = 3  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"'nosection\.key'"):
        Config.from_dict({"nosection": {"key": 1}})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=abc", "must be an integer"),
        ("train.batch_size=2.5", "must be an integer"),
        ("train.epochs=true", "must be an integer"),
        ("optim.base_lr=true", "must be a number"),
        ("train.progress=3", "true or false"),
        ("train.progress=1", "true or false"),
        ("views.mean=0.5", "must be a list"),
        ("optim.base_lr=fast", "must be a number"),
        ("train.epochs=null", "train.epochs cannot be null"),
        ("novalue", "key=value"),
    ],
)
def test_wrong_types_are_refused_with_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), [override])


def test_a_range_violation_names_key_value_rule_and_fix():
    with pytest.raises(ConfigError) as info:
        apply_overrides(Config(), ["optim.momentum=1.0"])
    assert str(info.value) == "optim.momentum must be in [0, 1), got 1.0; e.g. optim.momentum=0.9"
    with pytest.raises(ConfigError) as info:
        apply_overrides(Config(), ["optim.clip_grad=-1"])
    assert (
        str(info.value) == "optim.clip_grad must be > 0 or null, got -1; e.g. optim.clip_grad=null"
    )


def test_a_choice_violation_lists_the_choices():
    with pytest.raises(ConfigError) as info:
        apply_overrides(Config(), ["eval.network=teacher"])
    assert str(info.value) == "eval.network='teacher' is unknown; choose one of auto|online|target"
    with pytest.raises(ConfigError, match=r"simclr\.loss_scale='avg' is unknown; .* mean\|sum"):
        Config.from_dict({"simclr": {"loss_scale": "avg"}})


# Rules of one option: refused as soon as the value is set.
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("simclr.temperature=0", "temperature must be > 0"),
        ("simclr.temperature=-0.1", "temperature must be > 0"),
        ("data.dataset=imagenet22k", "data.dataset='imagenet22k' is unknown"),
        ("method=deepcluster", "method='deepcluster' is unknown"),
        ("views.jitter_p=1.5", "probability"),
        ("optim.lr_scaling=cubic", "linear|sqrt|none"),
        ("views.blur_p=[0.5, 1.5]", "probabilities"),
        ("moco.temperature=0", "temperature must be > 0"),
        ("byol.momentum_base=1.5", "momentum_base must be in"),
        ("mae.mask_ratio=1.0", "must be in [0, 1)"),
        ("mae.mask_ratio=-0.1", "plain autoencoder"),
        ("views.local_crop_scale=[0.4, 0.05]", "0 < min <= max <= 1"),
        ("views.std=[0.5, 0.5]", "1 or 3 values"),
        ("backbone.drop_path_rate=1.0", "backbone.drop_path_rate must be in [0, 1)"),
        ("dino.warmup_teacher_temperature_epochs=-1", "must be >= 0"),
    ],
)
def test_impossible_values_are_refused_when_set(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(Config(), [override])


# Rules that combine options: checked by validate(), once every value is in.
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.batch_size=1"], "SimCLR needs at least 2 images"),
        (["data.dataset=folder"], "needs data.data_dir"),
        (["method=moco", "moco.queue_size=64", "train.batch_size=128"], "queue must hold"),
        (["method=moco", "train.batch_size=100", "moco.split_bn=8"], "divisible by moco.split_bn"),
        (["method=byol", "train.batch_size=1"], "byol needs at least 2"),
        (["method=mae", "backbone.name=resnet18"], "needs a ViT backbone"),
        (["method=mae", "mae.decoder_heads=5"], "mae.decoder_heads must divide"),
        (["backbone.name=vit_tiny", "views.size=30", "backbone.patch_size=4"], "multiple of"),
        (["method=dino", "views.size=32", "views.local_size=40"], "views.local_size=40 must be"),
        (["method=mae", "backbone.name=vit_tiny", "views.local_crops=2"], "mae takes no local"),
        (
            ["method=dino", "views.size=96", "train.batch_size=1"],
            "DINO's center and BatchNorm need at least 2",
        ),
    ],
)
def test_impossible_combinations_fail_validation_with_the_fix(overrides, message):
    cfg = apply_overrides(Config(), overrides)
    with pytest.raises(ConfigError, match=re.escape(message)):
        cfg.validate()


def test_only_the_active_methods_checks_run():
    cfg = apply_overrides(Config(), ["method=simclr", "mae.decoder_heads=5"])
    cfg.validate()  # a MAE setting does not stop a SimCLR run
    cfg.method = "mae"
    cfg.backbone.name = "vit_tiny"
    with pytest.raises(ConfigError, match=r"mae\.decoder_heads must divide"):
        cfg.validate()


def test_assignment_is_validated_and_coerced():
    cfg = Config()
    with pytest.raises(ConfigError, match=r"^train\.epochs must be >= 1, got 0"):
        cfg.train.epochs = 0
    assert cfg.train.epochs == 100  # unchanged
    with pytest.raises(ConfigError, match="method='deepcluster' is unknown"):
        cfg.method = "deepcluster"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="train is a section, not an option"):
        cfg.train = 3  # type: ignore[assignment]
    cfg.train.epochs = 1
    cfg.optim.base_lr = 1  # an int for a float field
    cfg.views.blur_p = 0.5  # type: ignore[assignment]  # one value for every view
    assert cfg.train.epochs == 1 and isinstance(cfg.optim.base_lr, float)
    assert cfg.views.blur_p == [0.5]
    cfg.views.solarize_p = [0.0]
    cfg.views.solarize_p.append(2.0)  # in place: not seen by the assignment check ...
    with pytest.raises(ConfigError, match=r"views\.solarize_p holds probabilities"):
        cfg.validate()  # ... but by validate()


def test_every_failure_is_one_config_error_line():
    for override in ["train.epochs=0", "views.mean=[a]", "train=3", "eval.linear_lrs=[]"]:
        with pytest.raises(ConfigError) as info:
            apply_overrides(Config(), [override])
        assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
        assert "validation error" not in str(info.value)  # not pydantic's dump


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


# A valid value other than the default for every option (a new option must be added here).
NON_DEFAULT = {
    "method": "dino",
    "run_dir": "runs/x",
    "data.dataset": "folder",
    "data.data_dir": "/data/x",
    "data.download": True,
    "data.eval_dataset": "cifar10",
    "data.eval_data_dir": "/data/y",
    "data.image_size": 40,
    "data.channels": 3,
    "data.subset": 1000,
    "data.num_workers": 2,
    "data.strict": True,
    "backbone.name": "resnet34",  # not a ViT: views.progressive_start_size refuses one
    "backbone.width": 0.5,
    "backbone.cifar_stem": True,
    "backbone.zero_init_residual": True,
    "backbone.patch_size": 4,
    "backbone.pool": "mean",
    "backbone.drop_path_rate": 0.1,
    "backbone.freeze_patch_embed": True,
    "views.size": 64,
    "views.crop_min_scale": 0.2,
    "views.color_strength": 0.5,
    "views.jitter_p": 0.7,
    "views.gray_p": 0.1,
    "views.blur_p": [1.0, 0.1],
    "views.solarize_p": [0.0, 0.2],
    "views.flip_p": 0.0,
    "views.local_crops": 6,
    "views.local_size": 16,
    "views.local_crop_scale": [0.05, 0.3],
    "views.progressive_start_size": 32,
    "views.progressive_until": 0.5,
    "views.progressive_step": 8,
    "views.mean": [0.4, 0.5, 0.6],
    "views.std": [0.2, 0.25, 0.3],
    "simclr.temperature": 0.1,
    "simclr.projector": "v1",
    "simclr.proj_hidden_dim": 512,
    "simclr.proj_out_dim": 64,
    "simclr.gather_distributed": False,
    "simclr.loss_scale": "sum",
    "moco.temperature": 0.07,
    "moco.queue_size": 4096,
    "moco.momentum": 0.99,
    "moco.proj_hidden_dim": 512,
    "moco.proj_out_dim": 64,
    "moco.split_bn": 0,
    "mocov3.temperature": 0.2,
    "mocov3.momentum_base": 0.996,
    "mocov3.proj_hidden_dim": 1024,
    "mocov3.proj_num_layers": 3,
    "mocov3.proj_out_dim": 128,
    "mocov3.pred_hidden_dim": 1024,
    "mocov3.pred_last_batch_norm": True,
    "mocov3.gather_distributed": False,
    "byol.momentum_base": 0.996,
    "byol.momentum_schedule": "constant",
    "byol.proj_hidden_dim": 1024,
    "byol.proj_out_dim": 128,
    "byol.pred_hidden_dim": 1024,
    "byol.predictor": False,
    "mae.mask_ratio": 0.6,
    "mae.decoder_dim": 256,
    "mae.decoder_depth": 4,
    "mae.decoder_heads": 8,
    "mae.norm_pix_loss": True,
    "dino.out_dim": 4096,
    "dino.hidden_dim": 512,
    "dino.bottleneck_dim": 64,
    "dino.head_batch_norm": True,
    "dino.norm_last_layer": False,
    "dino.global_crop_scale": [0.3, 1.0],
    "dino.student_temperature": 0.2,
    "dino.teacher_temperature": 0.07,
    "dino.warmup_teacher_temperature": 0.03,
    "dino.warmup_teacher_temperature_epochs": 5.5,
    "dino.center_momentum": 0.95,
    "dino.momentum_base": 0.99,
    "dino.freeze_last_layer_epochs": 0.25,
    "simsiam.proj_hidden_dim": 256,
    "simsiam.proj_out_dim": 256,
    "simsiam.proj_num_layers": 2,
    "simsiam.pred_hidden_dim": 64,
    "simsiam.fixed_predictor_lr": False,
    "simsiam.stop_gradient": False,
    "barlow.proj_hidden_dim": 1024,
    "barlow.proj_out_dim": 1024,
    "barlow.proj_num_layers": 2,
    "barlow.off_diagonal_weight": 0.005,
    "barlow.gather_distributed": False,
    "vicreg.proj_hidden_dim": 1024,
    "vicreg.proj_out_dim": 1024,
    "vicreg.proj_num_layers": 2,
    "vicreg.invariance_weight": 10.0,
    "vicreg.variance_weight": 10.0,
    "vicreg.covariance_weight": 0.5,
    "vicreg.eps": 1e-3,
    "vicreg.gather_distributed": False,
    "swav.proj_hidden_dim": 512,
    "swav.proj_out_dim": 64,
    "swav.num_prototypes": 100,
    "swav.temperature": 0.2,
    "swav.epsilon": 0.03,
    "swav.sinkhorn_iterations": 5,
    "swav.freeze_prototypes_epochs": 0.5,
    "swav.queue_length": 640,
    "swav.queue_start_epoch": 3,
    "swav.gather_distributed": False,
    "rotation.head": "linear",
    "rotation.hidden_dim": 256,
    "jigsaw.grid_size": 2,
    "jigsaw.tile_size": 12,
    "jigsaw.num_permutations": 20,
    "jigsaw.permutation_seed": 3,
    "jigsaw.hidden_dim": 512,
    "colorization.loss": "regression",
    "colorization.grid_size": 5.0,
    "colorization.num_neighbors": 3,
    "colorization.encode_sigma": 2.5,
    "colorization.prior_sigma": 4.0,
    "colorization.rebalance_lambda": 1.0,
    "colorization.temperature": 0.5,
    "colorization.output_stride": 2,
    "colorization.head_dim": 64,
    "colorization.prior_images": 500,
    "optim.name": "adamw",
    "optim.base_lr": 5e-4,
    "optim.lr_scaling": "sqrt",
    "optim.final_lr": 1e-6,
    "optim.warmup_epochs": 2.5,
    "optim.weight_decay": 0.04,
    "optim.momentum": 0.8,
    "optim.betas": [0.9, 0.95],
    "optim.lars_eta": 0.02,
    "optim.clip_grad": 3.0,
    "optim.clip_grad_mode": "per_tensor",
    "optim.final_weight_decay": 0.4,
    "optim.norm_and_bias_lr_scale": 0.024,
    "optim.decay_norm_and_bias": True,
    "train.batch_size": 64,
    "train.epochs": 7,
    "train.total_steps": 4000,
    "train.max_steps": 50,
    "train.seed": 3,
    "train.device": "cpu",
    "train.precision": "bf16",
    "train.channels_last": False,
    "train.compile": True,
    "train.compile_backend": "eager",
    "train.deterministic": True,
    "train.log_every": 5,
    "train.knn_every": 0,
    "train.knn_train_samples": None,
    "train.knn_test_samples": 500,
    "train.collapse_metrics": False,
    "train.online_linear": False,
    "train.online_linear_lr": 0.05,
    "train.checkpoint_every": 2,
    "train.checkpoint_every_steps": 100,
    "train.progress": False,
    "train.progress_every_s": 5.0,
    "train.tensorboard": True,
    "train.keep_best": 0,
    "train.sync_batchnorm": True,
    "train.dist_backend": "gloo",
    "train.on_nonfinite": "skip",
    "eval.knn_k": 10,
    "eval.knn_temperature": 0.1,
    "eval.linear_epochs": 30,
    "eval.linear_lrs": [0.5],
    "eval.linear_batch_norm": True,
    "eval.val_fraction": 0.2,
    "eval.batch_size": 128,
    "eval.precision": "fp32",
    "eval.label_seed": 3,
    "eval.probe_epochs": 5,
    "eval.probe_lrs": [0.2],
    "eval.finetune_epochs": 4,
    "eval.finetune_warmup_epochs": 0.5,
    "eval.finetune_lrs": [0.01, 0.1],
    "eval.finetune_batch_size": 64,
    "eval.finetune_encoder_lr_scale": 1.0,
    "eval.finetune_layer_decay": 0.65,
    "eval.finetune_regularise": False,
    "eval.network": "target",
}


def test_a_fully_non_default_config_round_trips_through_yaml(tmp_path):
    defaults = {key: value for key, _, value in iter_fields()}
    assert set(NON_DEFAULT) == set(defaults)
    cfg = Config.from_dict(NON_DEFAULT).validate()
    changed = {key: value for key, _, value in iter_fields(cfg)}
    assert changed == NON_DEFAULT
    assert all(changed[key] != defaults[key] for key in defaults)
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    again = Config.from_yaml(path)
    assert again == cfg and again.to_dict() == cfg.to_dict()
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert yaml.safe_load(cfg.to_yaml())["views"]["local_crop_scale"] == [0.05, 0.3]  # nested


def test_old_warmup_fraction_is_converted_to_epochs_with_a_warning(tmp_path):
    path = tmp_path / "config.yaml"  # as a run directory wrote it before the rename
    path.write_text("dino:\n  teacher_temperature_warmup: 0.3\ntrain:\n  epochs: 50\n")
    with pytest.warns(UserWarning, match=r"warmup_teacher_temperature_epochs=15 \(0\.3 x train"):
        cfg = Config.from_yaml(path)
    assert cfg.dino.warmup_teacher_temperature_epochs == pytest.approx(15.0)
    with pytest.warns(UserWarning, match="teacher_temperature_warmup"):
        apply_overrides(cfg, ["dino.teacher_temperature_warmup=0.5"])
    assert cfg.dino.warmup_teacher_temperature_epochs == pytest.approx(25.0)
    both = {"dino": {"teacher_temperature_warmup": 0.3, "warmup_teacher_temperature_epochs": 3}}
    with pytest.raises(ConfigError, match="are both given; keep only"):
        Config.from_dict(both)


def test_shipped_presets_load_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in sorted(CONFIGS.glob("*.yaml")):
            Config.from_yaml(path).validate()


def test_every_option_has_help_and_appears_in_option_help():
    text = option_help()
    for key, field, _ in iter_fields():
        assert field.description, f"{key} has no help text"
        assert key in text


def test_pretrain_help_lists_every_field_with_its_description(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    out = capsys.readouterr().out
    for key, field, value in iter_fields():
        assert f"\n  {key}={value!r}" in out, key
        assert field.description and field.description in out, key
    assert "  optim.momentum=0.9  (in [0, 1))" in out  # the rule that validation applies


def test_methods_follow_the_method_sections():
    assert METHODS == tuple(METHOD_SECTIONS) == typing.get_args(MethodName)
    cfg = Config()
    for name, section in METHOD_SECTIONS.items():
        cfg.method = name  # type: ignore[assignment]
        assert isinstance(cfg.method_section(), section) and section.section == name


def test_importing_the_config_does_not_import_torch():
    code = "import sys, selfsup.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_per_view_lists_accept_one_value_for_every_view():
    cfg = apply_overrides(Config(), ["views.blur_p=0", "views.solarize_p=[0.0, 0.2]"])
    assert cfg.views.blur_p == [0.0] and cfg.views.solarize_p == [0.0, 0.2]
