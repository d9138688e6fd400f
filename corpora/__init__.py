"""Corpus converters, one module per corpus (docs/corpora.md): each reads a corpus as its distributor ships it
and writes the MSP-Podcast layout with Labels/folds.csv. `prepare_corpus.py NAME SRC OUT` runs them.

Adding a corpus is adding one module with `NAME`, `check_layout(src)` and `convert(src, out, **options)` ->
(Path, common.Report), and one line in CONVERTERS."""
import importlib

CONVERTERS = {'iemocap': 'corpora.iemocap', 'msp-improv': 'corpora.msp_improv', 'crema-d': 'corpora.crema_d',
              'ravdess': 'corpora.ravdess', 'emodb': 'corpora.emodb'}


def get(name):
    """The converter module of a corpus name (iemocap, msp-improv, crema-d, ravdess, emodb)."""
    return importlib.import_module(CONVERTERS[name])
