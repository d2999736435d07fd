"""The application: a command line that trains orthogonal RNNs and times the updates.

It trains recurrent networks on the copy, adding and pixel-by-pixel
classification tasks, or times the low-rank updates against their dense
references. It uses the library only through its
public names (``import unitary_lowrank as ul``); nothing in :mod:`unitary_lowrank`
imports it.

Run ``python -m unitary_lowrank --help`` (or the ``unitary-lowrank`` console
script; ``--version`` prints ``unitary-lowrank`` and the package's version).
Subcommands:

- ``copy``, ``adding`` and ``pixels``: train a recurrent network whose recurrent
  matrix stays orthogonal, on the copy-memory or adding problem of the projUNN
  paper, or on (permuted) images read one pixel per step (digits, MNIST,
  Fashion-MNIST);
- ``bench``: time the low-rank updates against the dense references;
- ``plot``: overlay the curves of runs saved with ``--json``.

Exit status, and what a run leaves behind:

- 0: done (all ``--steps`` run, or stopped by ``--stop-below``, or, for ``pixels``,
  by the validation plateau);
- 1: the run diverged (a loss or the step on U stopped being finite, or a loss grew
  10 000 times above the larger of the baseline and the initial test loss), or the
  output could not be written, or an unexpected error;
- 2: a bad command line (the option values, the ``--json``/``--plot``/``--out``
  paths, which are checked before any training or timing starts, a missing backend
  or matplotlib, sizes that do not fit in memory, missing or corrupt data files);
- 130: interrupted (Ctrl-C).

Every failure ends with one line on stderr, never a traceback (``python -X dev``
shows the traceback of an unexpected error). A training run that diverges or is
interrupted still prints its summary and writes ``--json`` and ``--plot``; the JSON
summary's ``stop_reason`` says why it stopped: ``"steps"`` (all run), ``"target"``
(``--stop-below``), ``"plateau"`` (``pixels``: no better validation accuracy after
the last decay), ``"diverged"`` or ``"interrupted"``.
"""

from .app import main

__all__ = ["main"]
