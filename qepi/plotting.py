"""Figures for reports, made without pyplot: saving one never switches matplotlib's backend
or shows a window, so inline plots in a notebook keep working after a qepi report.

Example:
    >>> fig, ax = subplots(figsize=(3, 2))
    >>> _ = ax.plot([0, 1], [1, 0])
    >>> type(fig).__name__
    'Figure'
"""

from __future__ import annotations


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, layout=None, **kwargs):
    """Like ``plt.subplots`` but outside pyplot; the figure is freed with its last reference."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kwargs)
