"""What every copy strategy is handed besides the source and the upload: the settings and the collaborators
(clock, sleep, progress, deadline, checkpoint sink) the caller injected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..settings import TransferSettings
from .limits import CHECKPOINT_EVERY_SECONDS

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

Clock = Callable[[], float]
Sleep = Callable[[float], None]
#: Called with (bytes just received — negative when a restart discards bytes, file size).
ProgressCallback = Callable[[int, int], None]
CheckpointSink = Callable[["Checkpoint"], None]
#: Seconds left before the caller must return.
TimeLeft = Callable[[], float]


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyContext:
    settings: TransferSettings
    clock: Clock
    sleep: Sleep
    progress: ProgressCallback | None = None
    #: None: no deadline.
    time_left: TimeLeft | None = None
    on_checkpoint: CheckpointSink | None = None
    checkpoint_every: float = CHECKPOINT_EVERY_SECONDS

    def report(self, amount: int, total: int) -> None:
        if self.progress is not None:
            self.progress(amount, total)
