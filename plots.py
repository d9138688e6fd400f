"""Plots of predict.py: one PNG per file, the waveform on top and the emotion curves of the attributes below."""
from pathlib import Path

import numpy as np

from audio import SR
from utils import EMOS, atomic_write

COLORS = {'Act': '#d62728', 'Dom': '#2ca02c', 'Val': '#1f77b4'}
NAMES = {'Act': 'Arousal', 'Dom': 'Dominance', 'Val': 'Valence'}



def _plot_waveform(ax0, signal, row, title, spans):
    """Waveform panel: min/max envelope per pixel column so long files stay fast and readable."""
    dur = len(signal) / SR
    nb = min(len(signal), 3000)
    if nb < len(signal):
        edges = np.linspace(0, len(signal), nb + 1).astype(int)
        tb, lo, hi = edges[:-1] / SR, np.minimum.reduceat(signal, edges[:-1]), np.maximum.reduceat(signal, edges[:-1])
    else:
        tb, lo, hi = np.arange(len(signal)) / SR, signal, signal
    ax0.fill_between(tb, lo, hi, color='0.35', lw=0.3)
    if nb >= len(signal):
        ax0.plot(tb, signal, color='0.35', lw=0.5)
    peak = max(float(np.abs(signal).max()), 1e-4)
    ax0.set_ylim(-1.1 * peak, 1.1 * peak)
    ax0.set_yticks([])
    ax0.set_ylabel('waveform')
    ax0.set_title(title or Path(row['file']).name, loc='left', fontsize=11, fontweight='bold')
    ax0.set_title(f"{dur:.2f} s" + (f", {row['n_windows']} windows" if row.get('n_windows', 1) > 1 else ''),
                  loc='right', fontsize=9, color='0.4')
    for t0, t1, label in spans or []:
        ax0.text((t0 + t1) / 2, 1.08 * peak, label, ha='center', va='top', fontsize=9, color='0.15')


def _plot_curves(ax1, row, times):
    """Curves panel: chunk curves, utterance values (dashed), rank-1 chunks; -> (curves, has_ranks)."""
    emos = [e for e in EMOS if row.get(e) is not None]
    curves = {e: np.asarray(row[f'{e}_curve']) for e in emos if row.get(f'{e}_curve') is not None}
    has_ranks = False
    for emo in emos:
        c = COLORS[emo]
        if emo in curves:
            ax1.plot(times, curves[emo], '-o', color=c, ms=3, lw=1.8, label=f"{NAMES[emo]} ({emo})")
        else:  # utterance-level model (MSCR): a solid line per attribute
            ax1.plot([], [], '-', color=c, lw=1.8, label=f"{NAMES[emo]} ({emo})")
        ax1.axhline(row[emo], color=c, ls='--' if emo in curves else '-', lw=1.1 if emo in curves else 2, alpha=0.9)
        ranks = row.get(f'{emo}_ranks')
        if ranks is not None and len(ranks):
            has_ranks = True
            top = int(np.argmin(ranks))
            ax1.plot(times[top], curves[emo][top], marker='*', ms=13, color=c, mec='k', mew=0.6, zorder=5)
    label_y, prev = {}, -np.inf  # right-margin value labels, pushed apart so they never overlap
    for emo in sorted(emos, key=lambda e: row[e]):
        prev = label_y[emo] = max(row[emo], prev + 0.3)
    for emo in emos:
        ax1.annotate(f"{emo} {row[emo]:.2f}", xy=(1.0, label_y[emo]), xycoords=('axes fraction', 'data'),
                     xytext=(4, 0), textcoords='offset points', va='center', fontsize=9, color=COLORS[emo],
                     fontweight='bold', annotation_clip=False)
    lo_v = min([1.0] + [float(np.min(c)) for c in curves.values()] + [row[e] for e in emos])
    hi_v = max([7.0] + [float(np.max(c)) for c in curves.values()] + [row[e] for e in emos])
    ax1.set_ylim(lo_v - 0.15, hi_v + 0.15)
    return curves, has_ranks


def _plot_axes(ax1, plt, dur, times, curves, has_ranks):
    ax1.axhline(4, color='0.6', lw=0.8, zorder=0)
    ax1.set_yticks(range(1, 8))
    ax1.set_yticklabels(['1 low', '2', '3', '4', '5', '6', '7 high'])
    ax1.set_ylabel('predicted emotion (1-7)')
    ax1.set_xlabel('time (s)', fontsize=9)
    ax1.set_xlim(0, max(dur, times.max() if len(times) else 0, 1e-3))
    ax1.grid(alpha=0.3)
    handles, labels = ax1.get_legend_handles_labels()
    if curves:
        handles.append(plt.Line2D([], [], color='0.3', ls='--', lw=1.1))
        labels.append('utterance value')
    if has_ranks:
        handles.append(plt.Line2D([], [], color='w', marker='*', ms=11, mfc='0.6', mec='k'))
        labels.append('rank-1 chunk (ranker)')
    ax1.legend(handles, labels, loc='lower left', bbox_to_anchor=(0, 1.0), ncol=len(labels), fontsize=8.5,
               frameon=False, handlelength=1.8, columnspacing=1.2, borderaxespad=0.2)
    ax1.text(0.0, -0.16, 'dots: one prediction per 1 s chunk, at the chunk centre' if curves else
             'utterance-level predictions (this model has no chunk curve)', transform=ax1.transAxes,
             fontsize=8, color='0.4')


def plot_file(signal, row, png, title=None, spans=None):
    """Waveform on top, chunk curves of the attributes over time below, utterance values as dashed lines.

    spans: optional [(t0, t1, label), ...] regions shaded and labelled on both panels (e.g. known segments).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(9, 5.4), sharex=True, gridspec_kw={'height_ratios': [1, 2.4]})
    try:
        _plot_waveform(ax0, signal, row, title, spans)
        for k, (t0, t1, _) in enumerate(spans or []):
            for a in (ax0, ax1):
                a.axvspan(t0, t1, color='0.5', alpha=0.08 if k % 2 else 0.0, lw=0)
        times = np.asarray(row.get('chunk_times') if row.get('chunk_times') is not None else [], dtype=float)
        curves, has_ranks = _plot_curves(ax1, row, times)
        _plot_axes(ax1, plt, len(signal) / SR, times, curves, has_ranks)
        for a in (ax0, ax1):
            a.spines[['top', 'right']].set_visible(False)
        fig.tight_layout()
        fig.subplots_adjust(right=0.91)
        atomic_write(png, lambda f: fig.savefig(f, dpi=110, format='png', metadata={'Software': None}))
    finally:
        plt.close(fig)


def plot_layer_weights(weights, layers, png, title=''):
    """Bar chart of the learnt softmax layer weights of an SSL layer sum (one bar per stored hidden state)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(max(3.0, 0.35 * len(weights) + 1.5), 2.8))
    try:
        ax.bar([str(k) for k in layers], weights, color='#1f77b4')
        ax.axhline(1 / len(weights), color='0.5', lw=0.8, ls='--')
        ax.set_xlabel('hidden state (layer)')
        ax.set_ylabel('softmax weight')
        ax.set_title(title, fontsize=9, loc='left')
        ax.spines[['top', 'right']].set_visible(False)
        fig.tight_layout()
        atomic_write(png, lambda f: fig.savefig(f, dpi=110, format='png', metadata={'Software': None}))
    finally:
        plt.close(fig)
