"""The progress bars a terminal shows during a mirror (rich's Progress): in a module of
their own, imported only when there is a terminal to show them on."""

from __future__ import annotations

import anyio
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .._events import Event, FileDone, FileFailed, FileProgress, FileSkipped, FileStarted
from ._output import LineReporter, human_bytes

__all__ = ["LiveReporter"]


class _SpeedColumn(ProgressColumn):
    """rich's speed, in the same 1024-based units as every other figure we print."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        text = "?" if speed is None else f"{human_bytes(speed)}/s"
        return Text(text, style="progress.data.speed")


class LiveReporter(LineReporter):
    """A terminal: an overall bar and a bar per active transfer, file lines above them."""

    def __init__(self, console: Console, *, primary: str = "") -> None:
        super().__init__(console, primary=primary)
        self.progress = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(),
            DownloadColumn(binary_units=True), _SpeedColumn(), TimeRemainingColumn(),
            console=console)
        self.overall = self.progress.add_task("total", total=0)
        self.bars: dict[str, TaskID] = {}

    def __call__(self, event: Event) -> None:
        super().__call__(event)
        name = getattr(event, "name", None)
        if isinstance(event, FileStarted) and event.name not in self.bars:
            self.bars[event.name] = self.progress.add_task(event.name, total=event.size)
        if name in self.bars:
            bar = self.bars[name]
            if isinstance(event, FileStarted | FileProgress):
                self.progress.update(bar, completed=self.tally.position[name])
            elif isinstance(event, FileDone | FileFailed | FileSkipped):
                self.progress.remove_task(self.bars.pop(name))
        t = self.tally
        self.progress.update(self.overall, total=t.total_bytes, completed=t.bytes_done,
                             description=f"total {t.finished}/{t.files} files")

    async def run(self, every: float) -> None:
        with self.progress:
            await anyio.sleep_forever()
