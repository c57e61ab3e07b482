import numpy as np
import pytest
import torch

from selfsup.backbones import LightnessEncoder, ResNet
from selfsup.cli import main
from selfsup.methods.colorization import Colorization
from selfsup.views import MultiViewTransform, colorization_view
from tests.conftest import METHOD_OVERRIDES

pytest.importorskip("matplotlib")
pytest.importorskip("skimage")
Image = pytest.importorskip("PIL.Image")

from selfsup.viz import save_colorization_grid  # noqa: E402


def _method() -> Colorization:
    torch.manual_seed(0)
    trunk = ResNet("resnet18", width=0.125, cifar_stem=True, in_channels=1)
    recipe = MultiViewTransform([colorization_view(16)], [0.5], [0.25])
    return Colorization(LightnessEncoder(trunk, [0.5], [0.25]), recipe, head_dim=8)


def test_writes_grey_prediction_and_truth_columns(tmp_path):
    method = _method().train()
    images = torch.zeros(5, 3, 20, 20, dtype=torch.uint8)  # resized to 16 px
    images[:, 0] = 220  # saturated red: the truth column is red, the input column grey
    path = save_colorization_grid(method, images, tmp_path / "figs" / "c.png", 3, cell_px=64)
    png = Image.open(path)
    assert png.format == "PNG" and png.size == (3 * 64, 3 * 64 + 24)
    assert method.training  # mode restored
    pixels = np.asarray(png.convert("RGB")).astype(int)[24:]
    cell = slice(8, 56)  # inside the first row's cells, away from the padding
    grey, truth = pixels[cell, 8:56], pixels[cell, 128 + 8 : 128 + 56]
    assert np.abs(grey - grey[..., :1]).max() <= 2  # R = G = B: no colour
    assert (truth[..., 0] - truth[..., 1]).min() > 100  # red
    with pytest.raises(ValueError, match="RGB batch"):
        save_colorization_grid(method, images[:, :1], tmp_path / "x.png")


def test_the_cli_draws_a_colorization_run(tmp_path, capsys):
    run = tmp_path / "run"
    tiny = ["train.progress=false", "train.tensorboard=false", "train.knn_every=0"]
    args = [*METHOD_OVERRIDES["colorization"], "backbone.width=0.125", "train.batch_size=32"]
    assert main(["pretrain", *args, *tiny, "train.max_steps=2", "--run-dir", str(run)]) == 0
    out = tmp_path / "picture.png"
    assert main(["viz", "colorization", str(run), "--out", str(out), "--num-images", "4"]) == 0
    assert Image.open(out).size == (3 * 128, 4 * 128 + 24)
    capsys.readouterr()
    other = tmp_path / "simclr"
    simclr = ["data.dataset=photo_patches", "data.image_size=16", "views.size=16"]
    simclr += ["backbone.width=0.125", "train.batch_size=32", "simclr.proj_hidden_dim=16"]
    assert main(["pretrain", *simclr, *tiny, "train.max_steps=1", "--run-dir", str(other)]) == 0
    assert main(["viz", "colorization", str(other)]) == 2
    assert "method=colorization" in capsys.readouterr().err
