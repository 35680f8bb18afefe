"""SIGTERM / SIGINT stop the trainer, and the handlers do not keep it alive: under torchrun a
trainer kept until interpreter shutdown keeps its DDP model and process group, whose gloo threads
then abort the process ("terminate called without an active exception")."""
from __future__ import annotations

import gc
import os
import signal
import weakref

from detengine.train.control import install_stop_signals


class _Trainer:
    def __init__(self):
        self.stops = 0

    def request_stop(self):
        self.stops += 1


def test_sigterm_asks_the_trainer_to_stop_and_restore_puts_the_old_handler_back():
    before = signal.getsignal(signal.SIGTERM)
    trainer = _Trainer()
    restore = install_stop_signals(trainer)
    try:
        assert signal.getsignal(signal.SIGTERM) is not before
        os.kill(os.getpid(), signal.SIGTERM)
        assert trainer.stops == 1
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_installed_handler_does_not_keep_the_trainer_alive():
    trainer = _Trainer()
    restore = install_stop_signals(trainer)
    try:
        ref = weakref.ref(trainer)
        del trainer
        gc.collect()
        assert ref() is None
        os.kill(os.getpid(), signal.SIGINT)  # a signal after the trainer is gone is harmless
    finally:
        restore()
