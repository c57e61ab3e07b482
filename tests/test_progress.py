"""selfsup.progress: bar or plain lines, phases, one-line warnings; a fake clock, no timing."""

import re
import warnings

import pytest
import torch

from selfsup import progress
from selfsup.eval.features import extract_features
from selfsup.eval.linear import linear_probe
from selfsup.progress import (
    ProgressStyle,
    Reporter,
    format_duration,
    one_line_warnings,
    phase,
)


class FakeClock:
    """Each reading is ``tick`` seconds after the previous one."""

    def __init__(self, tick: float = 1.0) -> None:
        self.t, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.t += self.tick
        return self.t


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(progress, "now", fake)
    return fake


def test_durations_read_as_people_write_them():
    assert [format_duration(s) for s in (5, 65, 3600 + 125, 2 * 86400 + 7200)] == [
        "5s",
        "1m05s",
        "1h02m",
        "2d02h",
    ]
    assert format_duration(float("nan")) == format_duration(float("inf")) == "?"


def test_plain_lines_follow_the_cadence_and_end_with_a_last_line(clock, capsys):
    reporter = Reporter("features", 10, "images", ProgressStyle(bar=False, every_s=3))
    for _ in range(10):
        reporter.update(1)
    reporter.close()
    captured = capsys.readouterr()
    assert captured.out == ""  # progress is on stderr only
    lines = captured.err.splitlines()
    # one reading per update: 3 s pass every third image; close() adds the 10/10 line
    assert [line.split(",")[0] for line in lines] == [
        "features: 3/10 images",
        "features: 6/10 images",
        "features: 9/10 images",
        "features: 10/10 images",
    ]
    assert lines[0] == "features: 3/10 images, elapsed 3s, ETA 7s"


def test_no_plain_lines_with_a_zero_cadence_or_a_bar(clock, capsys):
    for style in (ProgressStyle(bar=False, every_s=0), ProgressStyle(bar=True, every_s=1)):
        reporter = Reporter("features", 5, "images", style)
        for _ in range(5):
            reporter.update(1)
        reporter.close()
    err = capsys.readouterr().err
    assert "features: 1/5 images" not in err and "ETA" not in err
    assert "\rfeatures:   0%|" in err  # the forced bar, although stderr is not a terminal


def test_the_default_style_draws_a_bar_only_on_a_terminal(monkeypatch):
    assert not ProgressStyle().shows_bar()  # pytest's stderr is not a terminal
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    assert ProgressStyle().shows_bar() and not ProgressStyle(bar=False).shows_bar()


def test_a_phase_says_what_it_does_its_progress_and_its_result(clock, capsys):
    with phase("k-NN", "extracting 4 images", 4, "images", ProgressStyle(every_s=2)) as step:
        for _ in range(4):
            step.update(1)
        step.result = "top-1 50.00%"
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "k-NN: extracting 4 images ..."
    assert lines[1].startswith("k-NN: 2/4 images, elapsed")
    assert re.fullmatch(r"k-NN: top-1 50\.00% in \d+\.\d s", lines[-1])


def test_a_quiet_phase_prints_nothing_and_a_failed_one_no_result(clock, capsys):
    with phase("quiet", total=3, style=None) as step:
        step.update(3)
    assert capsys.readouterr().err == ""
    with pytest.raises(RuntimeError), phase("broken", style=ProgressStyle()):
        raise RuntimeError("boom")
    assert capsys.readouterr().err.splitlines() == ["broken ..."]


def test_feature_extraction_counts_images_only_when_asked(capsys):
    encoder = torch.nn.Flatten()
    batches = [(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))] * 2
    counted: list[int] = []
    extract_features(encoder, batches, lambda x: x.float(), progress=counted.append)
    assert counted == [3, 3]
    extract_features(encoder, batches, lambda x: x.float())
    assert capsys.readouterr().err == ""


def test_linear_probe_reports_each_lr_and_the_final_fit_only_when_asked(clock, capsys):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 4, generator=gen), torch.arange(40) % 2
    kwargs = {"epochs": 4, "lrs": (0.1, 1.0), "batch_size": 8}
    quiet = linear_probe(x, y, x, y, 2, **kwargs)
    assert capsys.readouterr().err == ""
    loud = linear_probe(x, y, x, y, 2, **kwargs, progress=ProgressStyle(every_s=1), desc="probe")
    assert loud.test_accuracy == quiet.test_accuracy  # reporting changes nothing
    err = capsys.readouterr().err
    assert "probe lrs 0.1, 1: 4 epochs on 36 features, 2 lrs side by side ..." in err
    assert "probe lrs 0.1, 1: 2/4 epochs, elapsed" in err
    assert "probe final fit at lr " in err and "test top-1" in err
    assert re.search(r"probe lrs 0\.1, 1: validation top-1 \d+\.\d\d% \(lr 0\.1\), \d", err)


def _warn_twice_and_once_more() -> None:
    warnings.warn("the same message", UserWarning, stacklevel=1)
    warnings.warn("the same message", UserWarning, stacklevel=1)  # another line: not deduped
    warnings.warn("a second message\nover two lines", UserWarning, stacklevel=1)


def test_warnings_become_one_line_each_and_repeats_are_dropped(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # Python itself would show both repeats
        with one_line_warnings():
            _warn_twice_and_once_more()
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "warning: the same message",
        "warning: a second message over two lines",
    ]
