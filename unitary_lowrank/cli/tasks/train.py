"""The ``copy``, ``adding`` and ``pixels`` commands: their settings, loop and summary.

One run is split by concern across four modules, whose names are gathered here (the
command line and the tests use them as ``train.default_config``, ``train.train``, ...):

- :mod:`.config`: :class:`Config` and :class:`ConfigError`, the defaults of each task
  and the paper's presets (:func:`default_config`), the backend and the images a
  configuration names (:func:`resolve_backend`, :func:`load_data`);
- :mod:`.evaluation`: :class:`Task`, a task's batches, loss and accuracy on the device;
- :mod:`.loop`: :func:`train`, the training loop, and :class:`UnitaryUpdate`, the step
  on the recurrent matrix U for each method;
- :mod:`.summary`: what a run reports (:func:`format_summary`, :func:`write_json`,
  :func:`plot_histories`).
"""

from __future__ import annotations

from .config import (
    BACKENDS,
    DIRECTIONS,
    DTYPES,
    IO_INITS,
    LOWRANK_METHODS,
    METHODS,
    PRESETS,
    SAMPLERS,
    TASKS,
    Config,
    ConfigError,
    default_config,
    load_data,
    paper_io_init,
    resolve_backend,
)
from .evaluation import N_CLASSES, Task
from .loop import DIVERGENCE_FACTOR, TrainingInterrupted, UnitaryUpdate, train
from .summary import (
    PIXEL_TARGETS,
    STOP_REASONS,
    check_plot_available,
    format_summary,
    plot_histories,
    write_json,
)

__all__ = [
    "BACKENDS",
    "DIRECTIONS",
    "DIVERGENCE_FACTOR",
    "DTYPES",
    "IO_INITS",
    "LOWRANK_METHODS",
    "METHODS",
    "N_CLASSES",
    "PIXEL_TARGETS",
    "PRESETS",
    "SAMPLERS",
    "STOP_REASONS",
    "TASKS",
    "Config",
    "ConfigError",
    "Task",
    "TrainingInterrupted",
    "UnitaryUpdate",
    "check_plot_available",
    "default_config",
    "format_summary",
    "load_data",
    "paper_io_init",
    "plot_histories",
    "resolve_backend",
    "train",
    "write_json",
]
