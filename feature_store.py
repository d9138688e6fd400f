"""Feature store: one folder per (corpus, feature kind), scales to 100k+ utterances.

    data.bin    float32 rows (or float16 where meta.json says dtype 'float16', e.g. SSL stores; little-endian),
                utterances appended one after another
    index.csv   FileName,offset,length  (offset and length in rows; lists only rows fully written
                and fsynced; rewritten atomically at each flush)
    meta.json   feature, dim, hop (seconds per row, null for text tokens), preset, model, dtype,
                complete (bool), n_utterances, n_rows, ... (written atomically); SSL stores add the
                upstream's identity (name, SHA-256 of its weight files), layers and windowing (docs/ssl.md)

Loading an utterance is a memmap slice. A crash leaves `complete: false` plus an index that only
names rows that are really on disk; re-opening the writer truncates data.bin after the last indexed
row and skips the names already done (resume).
"""
import csv
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from errors import ToolkitError
from utils import atomic_write_text

DTYPE = np.dtype('<f4')
DTYPES = {'float32': np.dtype('<f4'), 'float16': np.dtype('<f2')}
INDEX_COLS = ['FileName', 'offset', 'length']


class StoreError(ToolkitError):
    """A missing, incomplete, corrupt or mismatching feature store; the message says what to do."""


def _read_meta(path):
    p = Path(path) / 'meta.json'
    if not p.exists():
        raise StoreError(f'{path}: no feature store here (meta.json missing); build one with '
                         f'`python extract_features.py --corpus ROOT --feature lld --out {path}`')
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise StoreError(f'{p}: unreadable ({e}); delete the folder and extract again') from None


def _read_index(path):
    """Ordered dict FileName -> (offset, length) from index.csv (empty if absent)."""
    p = Path(path) / 'index.csv'
    index = {}
    if not p.exists():
        return index
    with open(p, newline='') as f:
        r = csv.reader(f)
        header = next(r, None)
        if header != INDEX_COLS:
            raise StoreError(f'{p}: expected header {",".join(INDEX_COLS)}, found {header}')
        for row in r:
            index[row[0]] = (int(row[1]), int(row[2]))
    return index


class FeatureStore:
    """Read-only view: `store.get(name) -> (T, dim)` memmap slice of the store's dtype (float32, or float16 for
    compact stores; normalisation converts to float32); copy it before modifying.

    Picklable (DataLoader workers re-open the memmap lazily). Raises StoreError when the folder holds
    no store, or an incomplete one (unless allow_incomplete=True).
    """

    def __init__(self, path, allow_incomplete=False):
        self.path = Path(path)
        self.meta = _read_meta(self.path)
        if not self.meta.get('complete') and not allow_incomplete:
            raise StoreError(f'{self.path}: feature store is incomplete (extraction was interrupted or is '
                             f'still running); re-run extract_features.py with --out {self.path} to finish it')
        self.dim = int(self.meta['dim'])
        self.hop = self.meta.get('hop')
        if self.meta.get('dtype', 'float32') not in DTYPES:
            raise StoreError(f'{self.path}/meta.json: dtype {self.meta.get("dtype")!r}; this toolkit reads '
                             f'{sorted(DTYPES)}')
        self.dtype = DTYPES[self.meta.get('dtype', 'float32')]
        self.index = _read_index(self.path)
        self.names = list(self.index)
        self.n_rows = max((o + n for o, n in self.index.values()), default=0)
        size = (self.path / 'data.bin').stat().st_size if (self.path / 'data.bin').exists() else 0
        if size < self.n_rows * self.dim * self.dtype.itemsize:
            raise StoreError(f'{self.path}/data.bin is shorter ({size} bytes) than its index needs '
                             f'({self.n_rows} rows x {self.dim}); delete the folder and extract again')
        self._mm = None

    @property
    def data(self):
        if self._mm is None:
            if self.n_rows == 0:
                self._mm = np.zeros((0, self.dim), self.dtype)
            else:
                self._mm = np.memmap(self.path / 'data.bin', self.dtype, 'r', shape=(self.n_rows, self.dim))
        return self._mm

    def __getstate__(self):
        return {**self.__dict__, '_mm': None}

    def __contains__(self, name):
        return name in self.index

    def __len__(self):
        return len(self.index)

    def get(self, name):
        try:
            o, n = self.index[name]
        except KeyError:
            raise KeyError(f'{name!r} is not in the feature store {self.path} ({len(self)} utterances); '
                           f'extraction may have skipped it (see {self.path}/skipped.csv)') from None
        return self.data[o:o + n]

    def lengths(self):
        return {k: n for k, (_, n) in self.index.items()}

    def __repr__(self):
        return (f'FeatureStore({str(self.path)!r}, {len(self)} utterances, dim={self.dim}, hop={self.hop}, '
                f'feature={self.meta.get("feature")!r}, preset={self.meta.get("preset")!r})')


class FeatureStoreWriter:
    """Append utterances to a store folder, resumably.

        with FeatureStoreWriter(out, feature='lld', dim=130, hop=0.016, preset='published') as w:
            for name in names:
                if not w.done(name):
                    w.add(name, feats)          # (T, dim) array, stored as float32
        # leaving the block normally marks the store complete; an exception leaves it incomplete

    Re-opening an existing store checks that feature/dim/hop/preset/model match (StoreError if not),
    truncates data.bin after the last indexed row and keeps the done names. Rows are flushed,
    fsynced and indexed every `flush_every` utterances (or `flush_seconds`), and at close.
    Extra keyword arguments are stored in meta.json; those named in IDENTITY_EXTRA (an upstream's checksum, its
    layers, the windowing) must match too when a store is resumed. dtype: 'float32' or 'float16' (half the bytes;
    a value beyond float16's range stops with a message naming the utterance).
    """

    KEYS = ('feature', 'dim', 'hop', 'preset', 'model', 'dtype')
    IDENTITY_EXTRA = ('upstream_sha256', 'layers', 'window_seconds', 'context_seconds', 'input_normalize')

    def __init__(self, path, feature, dim, hop=None, preset=None, model=None, flush_every=500,
                 flush_seconds=60.0, dtype='float32', **extra):
        if dtype not in DTYPES:
            raise StoreError(f'dtype {dtype!r}: choose one of {sorted(DTYPES)}')
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        want = {'feature': feature, 'dim': int(dim), 'hop': None if hop is None else float(hop),
                'preset': preset, 'model': None if model is None else str(model), 'dtype': dtype}
        if (self.path / 'meta.json').exists():
            old = _read_meta(self.path)
            old.setdefault('dtype', 'float32')
            want.update({k: extra.get(k) for k in self.IDENTITY_EXTRA if k in extra or k in old})
            bad = [k for k in want if old.get(k) != want[k]]
            if bad:
                diff = ', '.join(f'{k}: store has {old.get(k)!r}, asked {want[k]!r}' for k in bad)
                raise StoreError(f'{self.path}: existing feature store does not match ({diff}); '
                                 f'use another --out folder or delete this one')
            self.index = _read_index(self.path)
        elif (self.path / 'index.csv').exists() or (self.path / 'data.bin').exists():
            raise StoreError(f'{self.path}: holds data.bin/index.csv but no meta.json; delete the folder')
        else:
            self.index = {}
        self.meta = {**want, 'offset_unit': 'rows', 'version': 1, **extra, 'complete': False}
        self.dtype = DTYPES[dtype]
        self.n_rows = max((o + n for o, n in self.index.values()), default=0)
        self.dim, self.flush_every, self.flush_seconds = int(dim), int(flush_every), float(flush_seconds)
        self._write_meta()
        data = self.path / 'data.bin'
        data.touch()
        size = data.stat().st_size
        if size < self.n_rows * self.dim * self.dtype.itemsize:
            raise StoreError(f'{data}: shorter than its index; delete the folder and extract again')
        self.f = open(data, 'r+b')
        self.f.truncate(self.n_rows * self.dim * self.dtype.itemsize)  # drop a half-written tail
        self.f.seek(0, os.SEEK_END)
        self.resumed = len(self.index)
        self.pending, self.last_flush, self.closed = [], time.time(), False

    def _write_meta(self):
        self.meta.update(n_utterances=len(self.index), n_rows=self.n_rows)
        atomic_write_text(self.path / 'meta.json', json.dumps(self.meta, indent=1) + '\n')

    def done(self, name):
        return name in self.index or name in self._pending_names()

    def __len__(self):
        return len(self.index) + len(self.pending)

    def add(self, name, array):
        if self.closed:
            raise StoreError(f'{self.path}: writer is closed')
        a = np.asarray(array)
        if a.ndim != 2 or a.shape[1] != self.dim:
            raise ValueError(f'{name}: expected a (T, {self.dim}) array, got shape {a.shape}')
        if name in self.index or name in self._pending_names():
            raise ValueError(f'{name}: already in the store {self.path}')
        if self.dtype.itemsize == 2 and np.nanmax(np.abs(a), initial=0.0) > 65504.0:
            raise StoreError(f'{name}: a value of {float(np.nanmax(np.abs(a))):.4g} is beyond float16 range; '
                             f'extract into a float32 store (--dtype float32)')
        self.f.write(np.ascontiguousarray(a, dtype=self.dtype).tobytes())
        self.pending.append((name, self.n_rows, len(a)))
        self.n_rows += len(a)
        if len(self.pending) >= self.flush_every or time.time() - self.last_flush > self.flush_seconds:
            self.flush()

    def _pending_names(self):
        if getattr(self, '_pn_len', -1) != len(self.pending):
            self._pn = {p[0] for p in self.pending}
            self._pn_len = len(self.pending)
        return self._pn

    def flush(self):
        """Make every added row durable, then atomically rewrite index.csv (and meta.json)."""
        self.f.flush()
        os.fsync(self.f.fileno())
        for name, o, n in self.pending:
            self.index[name] = (o, n)
        self.pending, self.last_flush = [], time.time()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator='\n')
        w.writerow(INDEX_COLS)
        w.writerows((k, o, n) for k, (o, n) in self.index.items())
        atomic_write_text(self.path / 'index.csv', buf.getvalue())
        self._write_meta()

    def close(self, complete=True, **extra):
        """Flush and close; complete=True marks the store finished (readers refuse incomplete ones)."""
        if self.closed:
            return
        self.flush()
        self.f.close()
        self.closed = True
        self.meta.update(extra, complete=bool(complete))
        self._write_meta()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(complete=exc_type is None)
        return False


def default_features(corpus, kind='lld'):
    """Where a corpus's store of `kind` lives by default: features/<corpus name>/<kind> under the repository (or
    the working directory, when one is there)."""
    REPO = Path(__file__).resolve().parent
    for base in (REPO, Path.cwd()):
        p = base / 'features' / corpus.name / kind
        if (p / 'meta.json').exists():
            return p
    return REPO / 'features' / corpus.name / kind
