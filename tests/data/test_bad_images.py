"""A corpus of bad and unusual image files, generated here, and what each one becomes.

Valid but unusual files (CMYK, 16-bit, palette, alpha, 1x1, thin strips) decode to the pixel
values computed by hand below. Unreadable files (corrupt, truncated, empty, not an image,
decompression bombs) are skipped with a warning naming them, or stop at once with strict=True.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from selfsup.cli import main
from selfsup.data import (
    EpochLoader,
    FileImageDataset,
    UnreadableImageError,
    UnreadableImageWarning,
    decode_image,
    load_dataset,
)

# --------------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------------


def solid(path: Path, value: int, size: tuple[int, int] = (6, 6)) -> Path:
    """An RGB PNG of one gray level ``value`` (tells the images apart after decoding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)
    return path


def noise_bytes(fmt: str, seed: int = 0) -> bytes:
    """A 32x32 random RGB image encoded as ``fmt`` (random pixels: no tiny compressed stream)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def truncated(path: Path, fmt: str) -> Path:
    """The first half of a valid file: the header parses, the pixel data ends early."""
    data = noise_bytes(fmt)
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupt_png_data(path: Path) -> Path:
    """A complete PNG whose compressed pixel data is overwritten with zeros."""
    data = bytearray(noise_bytes("PNG"))
    start = data.find(b"IDAT") + 100
    data[start : start + 60] = bytes(60)
    path.write_bytes(bytes(data))
    return path


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares ``width x height`` RGB pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(1000)))
        + chunk(b"IEND", b"")
    )
    return path


def pixels(image: torch.Tensor) -> list[tuple[int, ...]]:
    """The distinct pixel values of a uint8 [C, H, W] image, sorted."""
    flat = image.reshape(image.shape[0], -1).T.tolist()
    return sorted({tuple(p) for p in flat})


# --------------------------------------------------------------------------------------------
# Valid but unusual images are converted, with the right pixel values
# --------------------------------------------------------------------------------------------


def test_cmyk_becomes_rgb_by_the_naive_formula(tmp_path: Path) -> None:
    # R = (255 - C) * (255 - K) / 255: (245 * 215, 235 * 215, 225 * 215) / 255 = 206.6, 198.1, 189.7
    Image.new("CMYK", (4, 4), (10, 20, 30, 40)).save(tmp_path / "c.tif")
    assert pixels(decode_image(tmp_path / "c.tif", 4)) == [(207, 198, 190)]
    # JPEG stores CMYK inverted (Adobe); PIL undoes it. Lossy, so within a few levels.
    Image.new("CMYK", (16, 16), (10, 20, 30, 40)).save(tmp_path / "c.jpg", quality=100)
    rgb = decode_image(tmp_path / "c.jpg", 16)[:, 8, 8].tolist()
    assert all(abs(a - b) <= 3 for a, b in zip(rgb, [207, 198, 190], strict=True))


def test_16_bit_gray_is_scaled_to_8_bits_not_clipped(tmp_path: Path) -> None:
    # round(v / 257): 0 -> 0, 128 -> 0 (0.498), 1000 -> 4 (3.89), 25700 -> 100, 65535 -> 255.
    values = np.array([[0, 128, 1000, 25700]] * 2 + [[65535, 129, 514, 32896]] * 2, np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as opened:
        assert opened.mode.startswith("I")  # really a 16-bit file
    gray = decode_image(tmp_path / "g16.png", 4, channels=1)[0]
    expected = [[0, 0, 4, 100]] * 2 + [[255, 1, 2, 128]] * 2
    assert gray.tolist() == expected
    rgb = decode_image(tmp_path / "g16.png", 4, channels=3)
    assert torch.equal(rgb, gray.expand(3, -1, -1))


def test_32_bit_int_gray_is_read_as_16_bit_and_clamped(tmp_path: Path) -> None:
    values = np.array([[-5, 25700], [65535, 70000]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "i32.tif")
    with Image.open(tmp_path / "i32.tif") as opened:
        assert opened.mode == "I"
    assert decode_image(tmp_path / "i32.tif", 2, channels=1)[0].tolist() == [[0, 100], [255, 255]]


def test_palette_transparency_is_composited_on_white(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0])  # 0 red, 1 blue, 2 green
    for x in range(4):
        palette.putpixel((x, 1), 1)
        palette.putpixel((x, 2), 2)
    # Alpha per palette entry: red opaque, blue 128, green fully transparent.
    palette.save(tmp_path / "p.png", transparency=bytes([255, 128, 0]))
    image = decode_image(tmp_path / "p.png", 4)
    assert image[:, 0, 0].tolist() == [255, 0, 0]
    # blue at alpha 128 over white: (0*128 + 255*127) / 255 = 127, (255*128 + 255*127) / 255 = 255
    assert image[:, 1, 0].tolist() == [127, 127, 255]
    assert image[:, 2, 0].tolist() == [255, 255, 255]  # transparent: the background


def test_rgba_and_la_are_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:2] = (200, 100, 0, 128)  # half transparent
    rgba[2] = (10, 20, 30, 255)  # opaque
    rgba[3] = (10, 20, 30, 0)  # transparent
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    image = decode_image(tmp_path / "rgba.png", 4)
    # (c * 128 + 255 * 127) / 255: 200 -> 227.4, 100 -> 177.2, 0 -> 127
    assert image[:, 0, 0].tolist() == [227, 177, 127]
    assert image[:, 2, 0].tolist() == [10, 20, 30]
    assert image[:, 3, 0].tolist() == [255, 255, 255]

    Image.new("LA", (3, 3), (100, 50)).save(tmp_path / "la.png")
    # (100 * 50 + 255 * 205) / 255 = 224.6
    assert pixels(decode_image(tmp_path / "la.png", 3)) == [(225, 225, 225)]
    assert pixels(decode_image(tmp_path / "la.png", 3, channels=1)) == [(225,)]


def test_one_pixel_image_is_scaled_up(tmp_path: Path) -> None:
    Image.new("RGB", (1, 1), (12, 34, 56)).save(tmp_path / "dot.png")
    image = decode_image(tmp_path / "dot.png", 8)
    assert image.shape == (3, 8, 8) and pixels(image) == [(12, 34, 56)]


def test_gray_and_bilevel_become_three_equal_channels(tmp_path: Path) -> None:
    Image.new("L", (5, 5), 77).save(tmp_path / "gray.png")
    assert pixels(decode_image(tmp_path / "gray.png", 5)) == [(77, 77, 77)]
    Image.new("1", (5, 5), 1).save(tmp_path / "bits.png")
    assert pixels(decode_image(tmp_path / "bits.png", 5)) == [(255, 255, 255)]


def test_thin_strip_keeps_its_centre_without_a_huge_intermediate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strip = np.zeros((20000, 2), dtype=np.uint8)
    strip[9900:10100] = 200  # only the centre is bright
    Image.fromarray(strip).save(tmp_path / "strip.png")
    sizes: list[tuple[int, int]] = []
    resize = Image.Image.resize

    def recording_resize(self: Image.Image, size: tuple[int, int], resample: int) -> Image.Image:
        sizes.append((size[0], size[1]))
        return resize(self, size, resample)

    monkeypatch.setattr(Image.Image, "resize", recording_resize)
    image = decode_image(tmp_path / "strip.png", 16, channels=1)
    assert pixels(image) == [(200,)]
    # Without the cut the intermediate would be 16 x 160000 pixels; the 4:1 centre gives 16 x 64.
    assert sizes == [(16, 64)]


# --------------------------------------------------------------------------------------------
# Unreadable files: dropped when the dataset is built, or replaced when decoding fails
# --------------------------------------------------------------------------------------------


def test_files_that_cannot_be_opened_are_dropped_with_one_warning(tmp_path: Path) -> None:
    for value in (10, 20, 30):
        solid(tmp_path / f"good{value}.png", value)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("these are meeting notes, not a photo")
    damaged = bytearray(noise_bytes("JPEG"))
    damaged[:4] = b"XXXX"  # the JPEG signature is gone
    (tmp_path / "header.jpg").write_bytes(bytes(damaged))
    bomb_png(tmp_path / "bomb.png", 10_000, 10_000)  # 1e8 pixels: PIL itself only warns
    bomb_png(tmp_path / "huge.png", 100_000, 100_000)  # 1e10 pixels: PIL refuses to open it

    with pytest.warns(UnreadableImageWarning) as record:
        ds = load_dataset("folder", root=tmp_path, image_size=4)
    assert len(record) == 1
    message = str(record[0].message)
    assert "skipped 5 of 8 image files" in message and "--strict" in message
    for name in ("empty.png", "notes.jpg", "header.jpg", "bomb.png", "huge.png"):
        assert name in message
    assert isinstance(ds, FileImageDataset)
    assert [p.name for p in ds.paths] == ["good10.png", "good20.png", "good30.png"]
    assert [int(ds[i][0][0, 0, 0]) for i in range(3)] == [10, 20, 30]
    reasons = {p.name: r for p, r in ds.unreadable.items()}
    assert reasons["empty.png"] == "empty file (0 bytes)"
    assert reasons["notes.jpg"].startswith("not an image")
    assert "10000x10000" in reasons["bomb.png"] and "exceeds the limit" in reasons["bomb.png"]
    assert "DecompressionBombError" in reasons["huge.png"]


def test_warning_names_the_first_five_and_counts_the_rest(tmp_path: Path) -> None:
    solid(tmp_path / "ok.png", 1)
    for i in range(7):
        (tmp_path / f"zero{i}.png").write_bytes(b"")
    with pytest.warns(UnreadableImageWarning) as record:
        load_dataset("folder", root=tmp_path)
    message = str(record[0].message)
    assert "zero4.png" in message and "zero5.png" not in message and "and 2 more" in message


def test_decompression_bomb_is_refused_before_any_pixel_is_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    bomb_png(tmp_path / "bomb.png", 10_000, 10_000)
    with pytest.raises(UnreadableImageError, match="exceeds the limit") as info:
        decode_image(tmp_path / "bomb.png", 8)
    assert info.value.path == tmp_path / "bomb.png"


def test_undecodable_files_are_replaced_by_the_next_readable_one(tmp_path: Path) -> None:
    solid(tmp_path / "cat" / "a.png", 10)
    truncated(tmp_path / "cat" / "b.png", "PNG")
    solid(tmp_path / "dog" / "c.png", 30)
    corrupt_png_data(tmp_path / "dog" / "d.png")
    truncated(tmp_path / "dog" / "e.jpg", "JPEG")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every header is fine: nothing is dropped
        ds = load_dataset("folder", root=tmp_path, image_size=4)
    assert isinstance(ds, FileImageDataset)
    assert len(ds) == 5 and ds.labels.tolist() == [0, 0, 1, 1, 1]

    with pytest.warns(UnreadableImageWarning, match=r"b\.png") as record:
        image, label = ds[1]  # b is truncated: c (label 1) stands in, image and label together
    assert int(image[0, 0, 0]) == 30 and label == 1 and len(record) == 1
    with pytest.warns(UnreadableImageWarning) as record:
        image, label = ds[3]  # d (damaged data) and e (truncated) fail: wraps around to a
    assert int(image[0, 0, 0]) == 10 and label == 0
    assert {p.name for p in ds.unreadable} == {"b.png", "d.png", "e.jpg"}
    assert "truncated" in ds.unreadable[tmp_path / "dog" / "e.jpg"]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known bad files are not decoded or warned about again
        images, labels = ds.get_batch(torch.tensor([4, 1, 0, 2]))
    assert images[:, 0, 0, 0].tolist() == [10, 30, 10, 30] and labels.tolist() == [0, 1, 0, 1]


def test_an_epoch_over_bad_files_is_the_same_with_workers(tmp_path: Path) -> None:
    for i in range(6):
        solid(tmp_path / f"img{i}.png", 10 * (i + 1))
    truncated(tmp_path / "img2b.png", "PNG")
    (tmp_path / "img4b.png").write_bytes(b"")
    with pytest.warns(UnreadableImageWarning):
        ds = load_dataset("folder", root=tmp_path, image_size=4)
    assert len(ds) == 7  # the empty file is dropped, the truncated one stays in the order

    def epoch(workers: int) -> torch.Tensor:
        loader = EpochLoader(ds, batch_size=3, seed=5, drop_last=False, num_workers=workers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnreadableImageWarning)
            return torch.cat([images[:, 0, 0, 0] for images, _ in loader.iterate(1)])

    in_process = epoch(0)
    order = EpochLoader(ds, 3, seed=5, drop_last=False).epoch_order(1).tolist()
    # Sorted: img0 img1 img2 img2b img3 img4 img5; img2b (truncated) -> the next one, img3.
    values = [10, 20, 30, 40, 40, 50, 60]
    assert in_process.tolist() == [values[i] for i in order]
    assert torch.equal(epoch(1), in_process)


def test_strict_stops_at_the_first_unreadable_file_and_names_it(tmp_path: Path) -> None:
    solid(tmp_path / "a.png", 10)
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"b\.png \(empty file \(0 bytes\)\).*data\.strict"):
        load_dataset("folder", root=tmp_path, strict=True)

    (tmp_path / "b.png").unlink()
    truncated(tmp_path / "c.png", "PNG")
    ds = load_dataset("folder", root=tmp_path, strict=True)
    assert int(ds[0][0][0, 0, 0]) == 10
    with pytest.raises(UnreadableImageError, match=r"c\.png.*truncated"):
        ds[1]


def test_folder_without_a_readable_image_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_text("text")
    with pytest.raises(ValueError, match="none of the 2 image files in") as info:
        load_dataset("folder", root=tmp_path)
    assert str(tmp_path) in str(info.value) and "b.jpg" in str(info.value)

    (tmp_path / "a.png").unlink()
    (tmp_path / "b.jpg").unlink()
    truncated(tmp_path / "c.png", "PNG")  # opens, never decodes
    ds = load_dataset("folder", root=tmp_path)
    with pytest.warns(UnreadableImageWarning), pytest.raises(ValueError, match="can be decoded"):
        ds[0]


def test_file_lists_skip_unreadable_files_too(tmp_path: Path) -> None:
    solid(tmp_path / "a.png", 10)
    (tmp_path / "b.png").write_bytes(b"")
    solid(tmp_path / "c.png", 30)
    listing = tmp_path / "list.txt"
    listing.write_text("a.png 0\nb.png 1\nc.png 2\n")
    with pytest.warns(UnreadableImageWarning, match=r"skipped 1 of 3 .*list\.txt"):
        ds = load_dataset("filelist", root=listing, image_size=4)
    assert isinstance(ds, FileImageDataset)
    assert ds.labels.tolist() == [0, 2] and ds.num_classes == 3  # classes of the whole list


# --------------------------------------------------------------------------------------------
# Through the command line: bad files never stop a run; --strict stops it before training
# --------------------------------------------------------------------------------------------

TINY = [
    "data.dataset=folder",
    "data.image_size=8",
    "backbone.width=0.125",
    "views.size=8",
    "simclr.proj_hidden_dim=16",
    "simclr.proj_out_dim=8",
    "optim.name=sgd",
    "optim.warmup_epochs=0",
    "train.batch_size=4",
    "train.epochs=2",
    "train.precision=fp32",
    "train.progress=false",
    "train.knn_every=0",
]


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    for i in range(8):
        solid(folder / f"img{i}.png", 20 * i + 5)
    truncated(folder / "img3b.jpg", "JPEG")
    (folder / "zero.png").write_bytes(b"")
    return folder


def test_pretrain_on_a_folder_with_bad_files_finishes(
    bad_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    code = main(["pretrain", *TINY, f"data.data_dir={bad_folder}", "--run-dir", str(run)])
    assert code == 0
    # the CLI shows each warning as one `warning: <message>` line, without the source line
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert "zero.png" in " ".join(warned) and "img3b.jpg" in " ".join(warned)
    assert "UnreadableImageWarning" not in err and "warnings.warn" not in err
    assert (run / "encoder.safetensors").is_file() and (run / "checkpoints" / "last.pt").is_file()


def test_pretrain_strict_fails_before_training_with_one_line(
    bad_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    args = ["pretrain", *TINY, f"data.data_dir={bad_folder}", "--run-dir", str(run), "--strict"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "zero.png" in err and "empty file" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1 and not run.exists()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "no image files"),
        ("unreadable", "none of the 1 image files"),
    ],
)
def test_bad_data_paths_fail_before_training_naming_the_path(
    kind: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / kind
    if kind != "missing":
        path.mkdir()
    if kind == "unreadable":
        (path / "x.png").write_bytes(b"")
    run = tmp_path / "run"
    assert main(["pretrain", *TINY, f"data.data_dir={path}", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(path) in err and "Traceback" not in err
    assert len(err.splitlines()) == 1 and not run.exists()


def test_a_file_damaged_mid_run_never_loses_the_finished_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "images"
    for i in range(8):
        solid(folder / f"img{i}.png", 20 * i + 5)
    run = tmp_path / "run"
    base = [*TINY, f"data.data_dir={folder}", "train.epochs=1"]
    assert main(["pretrain", *base, "--run-dir", str(run)]) == 0
    last = run / "checkpoints" / "last.pt"
    saved = last.read_bytes()

    truncated(folder / "img5.png", "PNG")  # the header still parses: fails only when decoded
    assert main(["pretrain", "--resume", str(run), "train.epochs=2", "--strict"]) == 2
    err = capsys.readouterr().err
    assert "img5.png" in err and "Traceback" not in err
    assert last.read_bytes() == saved  # the strict stop left the finished checkpoint as it was

    # The run's config.yaml now says data.strict=true: turning it off resumes past the file.
    code = main(["pretrain", "--resume", str(run), "train.epochs=2", "data.strict=false"])
    assert code == 0
    assert any(
        line.startswith("warning: ") and "img5.png" in line
        for line in capsys.readouterr().err.splitlines()
    )
    assert last.read_bytes() != saved
