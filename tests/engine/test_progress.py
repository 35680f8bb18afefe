"""Progress bars of the CLI jobs: drawn only on a terminal of rank 0, fed by plain callbacks of
the engine's loops (which the window also runs, without bars)."""
from __future__ import annotations

import io

from detengine.data.synthetic import ensure_synthetic_dataset
from detengine.progress import ProgressBar, progress_bar, shows_bars, write_line
from detengine.train.events import EpochProgress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal_of_rank_0(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert progress_bar("eval", stream=io.StringIO()) is None               # a log file, a pipe, pytest
    assert isinstance(progress_bar("eval", stream=FakeTerminal()), ProgressBar)
    monkeypatch.setenv("RANK", "1")                                         # torchrun: only rank 0 draws
    assert not shows_bars(FakeTerminal())
    monkeypatch.setenv("RANK", "0")
    assert shows_bars(FakeTerminal())


def test_a_bar_and_a_line_share_the_terminal():
    term = FakeTerminal()
    with ProgressBar("export", stream=term) as bar:
        bar(3, 8)
        write_line("[warning] something", term)                             # above the bar, not through it
        bar(8, 8, loss="0.5")
    text = term.getvalue()
    assert "export: 100%" in text and "8/8" in text and "loss=0.5" in text and "[warning] something\n" in text
    plain = io.StringIO()
    write_line("no bar open", plain)
    assert plain.getvalue() == "no bar open\n"


def test_one_bar_per_epoch_from_the_training_events():
    made = []

    class Recorder:
        def __init__(self, desc, unit):
            self.desc, self.calls, self.closed = desc, [], False
            made.append(self)

        def __call__(self, done, total, **postfix):
            self.calls.append((done, total, sorted(postfix)))

        def close(self):
            self.closed = True

    watch = EpochProgress(Recorder)
    for epoch in range(2):
        for it in range(3):
            watch({"type": "iter", "epoch": epoch, "max_epochs": 2, "iter": it, "iters_per_epoch": 3, "loss": 1.0,
                   "lr": 0.1, "images_per_s": 5.0, "eta_s": 10, "last_in_epoch": it == 2})
    watch({"type": "end"})
    assert [b.desc for b in made] == ["epoch 1/2", "epoch 2/2"] and all(b.closed for b in made)
    assert made[1].calls == [(k, 3, ["eta", "img_s", "loss", "lr"]) for k in (1, 2, 3)]


def test_the_synthetic_generation_reports_each_image(tmp_path):
    calls = []
    ensure_synthetic_dataset(tmp_path / "d", num_train=3, num_val=2, image_size=64,
                             progress=lambda d, t: calls.append((d, t)))
    assert calls == [(k, 5) for k in range(1, 6)]
    ensure_synthetic_dataset(tmp_path / "d", num_train=3, num_val=2, image_size=64,
                             progress=lambda d, t: calls.append((d, t)))
    assert len(calls) == 5                                                  # already made: nothing to report
