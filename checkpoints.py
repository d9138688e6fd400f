"""Trained models on disk: find, verify, load and save them, each with a provenance record.

Every model this toolkit saves is a plain state_dict `<name>.pth.tar` (the published parameter names)
with a sibling `<name>.meta.json`, its provenance record (docs/pretrained.md, "Provenance and checks"):

    kind              'ranker' | 'seq2seq' | 'mscr'
    attributes        ['Act'] (a method-1 model predicts one attribute; MSCR ['Act', 'Dom', 'Val'])
    features          {'kind': 'lld', 'preset': 'published', 'hop': 0.016, 'dim': 130, 'store': path}
    chunks            {'m': 62, 'K': 22} (frames per one-second chunk, chunks per utterance)
    feature_norm      {'scope', 'source', 'sha256', 'mean', 'std'} (no statistics for 'speaker'/'corpus':
                      those are computed on the data being evaluated)
    label_norm        {'scope', 'source', 'sha256', 'stats': {'Act': [mean, std], ...}}
    corpus            {'name', 'root', 'splits': {'Train': n, 'Validation': n}, 'fold': 'fold3' or None (--fold)}
    init_from         None or {'source': 'release'|'own'|'demo', 'path', 'sha256'}
    settings          the training flags (epochs, batch, lr, seed, freeze, ...)
    result            best epoch and validation score
    toolkit_revision  git commit of the last change to the toolkit's code ('+modified' when the code that
                      trained differs from that commit); written by save_model, never passed in
    weights_sha256    SHA-256 of the .pth.tar file
    record_sha256     SHA-256 of the record itself (every other field, canonical JSON): a record edited
                      after training (a revision, a result, a setting) no longer matches and is refused
Paths are relative to the repository (or shortened to their last two parts): no machine paths.

The authors' v1.6 release (`--pretrained DIR`, DIR the root of their repository) is recognised by the
SHA-256 of its files (RELEASE_SHA256) and gets the same record in memory. Every consumer loads through
`resolve()` + `Checkpoint.check()`: kind, attribute, feature preset/hop/dimension and checksum are
verified, and a mismatch stops with a message naming the file, what it holds and what was asked.
Without any model flag the demo models shipped in the repository are used, and announced as such.
"""
import hashlib
import io
import json
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from errors import ToolkitError
from model import LSTMnet
from utils import (
    EMOS,
    RunLock,
    atomic_torch_save,
    atomic_write,
    atomic_write_text,
    load_norm,
    read_norm_record,
    sha256_file,
    unwrap,
)

REPO = Path(__file__).resolve().parent
SEQ2SEQ_DIR = REPO / 'trained_seq2seq_model'
RANKER_DIR = REPO / 'chunk_emotion_rankers' / 'trained_ranker_model'
KINDS = ('ranker', 'seq2seq', 'mscr', 'ssl_baseline')
SSL_FEATURE_KEYS = ('upstream', 'upstream_sha256', 'layers', 'layer_dim', 'model_type', 'dtype')
RECORD_VERSION = 2
DEMO_CORPUS = 'demo_corpus'
DEMO_NOTE = 'demo models trained on synthetic speech; for real speech use --pretrained DIR or your own checkpoint'

# The authors' release (Chunk-Level-Emotion-Retrieval, commit 137cedd): path in their repository -> SHA-256
RELEASE_NAME = 'Chunk-Level-Emotion-Retrieval v1.6 (MSP-Podcast v1.6)'
RELEASE_SEQ2SEQ = 'trained_seq2seq_model_v1.6/LSTM_epoch30_batch128_EmoRankerSeq_{emo}.pth.tar'
RELEASE_RANKER = 'chunk_emotion_rankers/trained_ranker_model_v1.6/LSTM_epoch20_batch128_{emo}_ranker.pth.tar'
RELEASE_SHA256 = {
    'NormTerm/act_norm_means.mat': '893c8117cc029a6e0f7b9de16eff489835b84d8ed33cba5a787ebf5056306cb4',
    'NormTerm/act_norm_stds.mat': '84efb053aae7db831793b4ff22582470c77c621c663a891c1983b39962723c8a',
    'NormTerm/dom_norm_means.mat': '559053d604149fd48da93b6ebe536946d8bf3727cd149bcc284d8e6b627bcba5',
    'NormTerm/dom_norm_stds.mat': '7b42e988626866bc5e4db68f42b55c5023c08aa833b4abad9549bb4ca95b3717',
    'NormTerm/feat_norm_means.mat': 'e1ea09f0142bc39142fb47b2b97b2aca5191d20408b4fde15f9b0e18cf3e26b2',
    'NormTerm/feat_norm_stds.mat': '13f48fc1346a0c6d5462b5557102ba7a4fec433a8f36d26a8903bc4b81e82dbe',
    'NormTerm/val_norm_means.mat': 'a8ebb05c9fdf5cc6f2abcb66c6f24de7ae2f006a96b244c23131f5caa6133c0a',
    'NormTerm/val_norm_stds.mat': 'a273acfb06a0c6c780ec6586c8dfae989621315fc58b8b6541ed7f8a9677b27c',
    RELEASE_RANKER.format(emo='Act'): 'c370f8edca518848e0ca8270cb0371f52c84048ba9af4b0ed21b274e1780344e',
    RELEASE_RANKER.format(emo='Dom'): 'a0574dd64b7a3f6c0ffdf670df06a5b9cec05a68be9d78184ffcdad3155e22ab',
    RELEASE_RANKER.format(emo='Val'): '3b03f363506a6e03a07e131e62c6736aa529aa0b3a693ed6cfa8d1221dad141c',
    RELEASE_SEQ2SEQ.format(emo='Act'): 'adc3da6f5de6cc24da1a82ba1105bf3fb55a76db2a7ca1622ad9a03c264e7322',
    RELEASE_SEQ2SEQ.format(emo='Dom'): 'bd5a5bf0e632ceb03ff3e53f9fe358fbddb4a4bd7ccf653b2f3b5a358b44c13e',
    RELEASE_SEQ2SEQ.format(emo='Val'): 'b8d78e3119dbb92bbe99241130b340faa11a641aba0f90f2e794e479646fda7b',
}
RELEASE_NORMTERM = {k.split('/', 1)[1]: v for k, v in RELEASE_SHA256.items() if k.startswith('NormTerm/')}
RELEASE_BY_SHA = {v: k for k, v in RELEASE_SHA256.items()}
NORMTERM_FILES = sorted(RELEASE_NORMTERM)      # the .mat files of every NormTerm folder


class CheckpointError(ToolkitError):
    """A model file that is missing, corrupt, or not the one asked for."""


# ================================================================ names, paths, checksums
def ranker_name(ep, batch, emo):
    return f'LSTM_epoch{ep}_batch{batch}_{emo}_ranker.pth.tar'


def seq2seq_name(ep, batch, emo):
    return f'LSTM_epoch{ep}_batch{batch}_EmoRankerSeq_{emo}.pth.tar'


def sibling(path, suffix):
    """LSTM_..._Act.pth.tar -> LSTM_..._Act<suffix> in the same folder."""
    path = Path(path)
    base = path.name[:-len('.pth.tar')] if path.name.endswith('.pth.tar') else path.stem
    return path.with_name(base + suffix)


def sha256_folder(path, names):
    """One checksum for a set of files of a folder (e.g. a NormTerm): SHA-256 over 'name sha256' lines."""
    lines = [f'{n} {sha256_file(Path(path) / n)}' for n in sorted(names) if (Path(path) / n).is_file()]
    return hashlib.sha256('\n'.join(lines).encode()).hexdigest()


def display_path(path):
    """A path for records and outputs: relative to the repository, else its last two parts (never the
    machine's absolute path)."""
    if path is None:
        return None
    p = Path(path).resolve()
    try:
        return p.relative_to(REPO).as_posix()
    except ValueError:
        return '/'.join(p.parts[-2:])


@lru_cache(maxsize=1)
def toolkit_revision():
    """Git commit of the last change to the toolkit's code, with '+modified' when the checked-out code
    differs from it ('unknown' outside a git checkout)."""
    try:
        out = subprocess.run(['git', '-C', str(REPO), 'log', '-1', '--format=%H', '--', '*.py'],
                             capture_output=True, text=True, timeout=10)
        rev = out.stdout.strip()
        if not rev:
            return 'unknown'
        dirty = subprocess.run(['git', '-C', str(REPO), 'diff', '--quiet', 'HEAD', '--', '*.py'],
                               capture_output=True, timeout=10).returncode
        return rev + ('+modified' if dirty else '')
    except (OSError, subprocess.SubprocessError):
        return 'unknown'


def record_checksum(record):
    """SHA-256 of a provenance record without its own checksum field (canonical JSON)."""
    body = {k: v for k, v in record.items() if k != 'record_sha256'}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(',', ':')).encode()).hexdigest()


def check_record_checksum(path, record):
    """Stop when a record that carries its checksum was changed after the training run wrote it."""
    want = record.get('record_sha256')
    if want is not None and record_checksum(record) != want:
        raise CheckpointError(f'{sibling(path, ".meta.json")}: the provenance record was edited after training '
                              f'wrote it (its record_sha256 does not match its contents); a record is written '
                              f'only by the training run: restore it or train the model again')


# ================================================================ the record of a model
class Checkpoint:
    """A model file with its provenance record; `source` is 'release', 'own' or 'demo'."""

    def __init__(self, path, record, source):
        self.path, self.record, self.source = Path(path), record, source

    kind = property(lambda self: self.record['kind'])
    attributes = property(lambda self: list(self.record.get('attributes') or []))
    features = property(lambda self: self.record.get('features') or {})
    sha256 = property(lambda self: self.record.get('weights_sha256'))

    def describe(self):
        """'release ...', 'own checkpoint <path>' or 'demo models (...)' for consoles and outputs."""
        name = display_path(self.path)
        if self.source == 'release':
            return f'release {RELEASE_NAME}: {self.path.name}'
        if self.source == 'demo':
            return f'demo model {name} ({DEMO_NOTE})'
        return f'own checkpoint {name}'

    def provenance(self):
        """Short provenance for output files."""
        return {'model_source': self.source, 'model': display_path(self.path), 'model_sha256': self.sha256,
                'kind': self.kind, 'attributes': self.attributes}

    @property
    def finished(self):
        """False only for an own model whose record says its training run did not finish (stopped, killed);
        released and demo models, and records written before the flag existed, count as finished."""
        return self.source == 'release' or self.record.get('finished', True) is not False

    def unfinished_note(self):
        """'' for a finished model, else what the record says about the run that stopped."""
        if self.finished:
            return ''
        total = (self.record.get('settings') or {}).get('epochs') or self.record.get('iters')
        best = (self.record.get('result') or {}).get('best_epoch', self.record.get('best_iter'))
        return (f'UNFINISHED: {display_path(self.path)} was saved by a training run that did not finish (best '
                f'{"iteration" if self.record.get("iters") else "epoch"} {best} of {total})')

    def require_finished(self, allow=False, flag='--allow-unfinished'):
        """Stop on a model of an unfinished run unless `allow` (then say so; the caller marks its outputs)."""
        if self.finished:
            return True
        note = self.unfinished_note()
        if not allow:
            raise CheckpointError(f'{note}; finish it (training.py with the same flags and --resume), or pass {flag} '
                                  f'to use it anyway (every output row is then marked)')
        print(f'warning: {note}; used because of {flag} (every output row says so)', file=sys.stderr)
        return False

    def feat_stats(self):
        """(mean, std) stored with the model, or None (speaker/corpus scope: computed on the data)."""
        fn = self.record.get('feature_norm') or {}
        if fn.get('mean') is None:
            return None
        return np.asarray(fn['mean'], np.float64), np.asarray(fn['std'], np.float64)

    def label_stats(self, emo):
        stats = (self.record.get('label_norm') or {}).get('stats') or {}
        if emo not in stats:
            raise CheckpointError(f'{self.path}: its record holds no label statistics for {emo} (it has '
                                  f'{sorted(stats)}); pass --norm DIR with the NormTerm the model was trained with')
        return tuple(float(v) for v in stats[emo])

    def check(self, kind, emo=None, preset=None, hop=None, dim=None):
        """Stop unless this is a `kind` model for `emo`, trained on features (preset, hop, dim), and its
        bytes are the ones recorded (SHA-256)."""
        what = f'{self.path} holds a {self.kind} model for {"/".join(self.attributes) or "?"}'
        if self.kind != kind:
            raise CheckpointError(f'{what}, but a {kind} model was asked for; pass a {kind} checkpoint')
        if emo is not None and emo not in self.attributes:
            raise CheckpointError(f'{what}, but -emo {emo} was asked for; pass the {emo} checkpoint '
                                  f'(e.g. a path with {{emo}} in it, or the folder holding all three)')
        f = self.features
        for key, want in (('preset', preset), ('dim', dim)):
            if want is not None and f.get(key) is not None and f[key] != want:
                raise CheckpointError(f'{what} trained on {f.get("preset")!r} LLDs ({f.get("dim")} dims, hop '
                                      f'{f.get("hop")} s), but the features given are {preset!r} ({dim} dims, hop '
                                      f'{hop} s); extract features with the preset the model was trained on')
        if hop is not None and f.get('hop') is not None and abs(float(f['hop']) - float(hop)) > 1e-9:
            raise CheckpointError(f'{what} trained at a {f["hop"]} s frame hop, the features given have {hop} s; '
                                  f'use features with the same hop')
        self.verify_bytes()
        return self

    def network(self):
        """LSTMnet keyword arguments of this model: its input dimension and layer sum (published: 130, none)."""
        net = self.record.get('network') or {}
        return {'input_dim': int(net.get('input_dim') or self.features.get('dim') or 130),
                'hidden': int(net.get('hidden') or 130), 'layer_sum': int(net.get('layer_sum') or 0)}

    def check_store(self, store):
        """Stop unless the feature store holds the features this model was trained on: the same kind (LLD or SSL),
        and for SSL stores the same upstream (by the SHA-256 of its weights, not its name), layers and hop."""
        f, meta = self.features, store.meta
        what = f'{self.path} was trained on'
        mine = f.get('kind') or 'lld'
        theirs = meta.get('feature') or 'lld'
        if mine != theirs and 'ssl' in (mine, theirs):
            desc = (lambda d, k: f'SSL features of {d.get("upstream")!r} (layers {d.get("layers")})' if k == 'ssl'
                    else f'{k} features')
            raise CheckpointError(f'{what} {desc(f, mine)}, but {store.path} holds {desc(meta, theirs)}; pass a '
                                  f'store extracted like the one the model was trained on (its record names it)')
        if mine == 'ssl':
            for key, name in (('upstream_sha256', 'upstream (SHA-256 of its weights)'), ('layers', 'layers')):
                if f.get(key) != meta.get(key):
                    raise CheckpointError(f'{what} SSL features of {f.get("upstream")!r} layers {f.get("layers")} '
                                          f'(upstream SHA-256 {str(f.get("upstream_sha256"))[:12]}...), but {store.path} '
                                          f'holds {meta.get("upstream")!r} layers {meta.get("layers")} (SHA-256 '
                                          f'{str(meta.get("upstream_sha256"))[:12]}...): another {name}; extract '
                                          f'the store with the model\'s upstream and --layers, or train on this one')
        self.check(self.kind, None, meta.get('preset'), store.hop, store.dim)
        return self

    def verify_bytes(self):
        if not self.path.is_file():
            raise CheckpointError(f'{self.path}: checkpoint file does not exist')
        check_record_checksum(self.path, self.record)
        if self.sha256 is None:
            print(f'note: {self.path.name}: no SHA-256 in its record (written by an older toolkit); not verified',
                  file=sys.stderr)
            return
        got = sha256_file(self.path)
        if got != self.sha256:
            where = 'the release table' if self.source == 'release' else sibling(self.path, '.meta.json').name
            raise CheckpointError(f'{self.path}: checksum mismatch (SHA-256 {got[:12]}..., {where} says '
                                  f'{self.sha256[:12]}...): the file is corrupt or was replaced; download or '
                                  f'train it again')


def read_record(path):
    """The raw JSON next to a checkpoint (<name>.meta.json), {} when there is none; a record that is not one
    this toolkit writes (missing keys, a null checksum, non-finite statistics) stops with its name."""
    p = sibling(path, '.meta.json')
    if not p.exists():
        return {}
    try:
        raw = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f'{p}: unreadable provenance record ({e}); restore it or retrain') from None
    check_record(raw, p)
    return raw


SHA_RE = re.compile(r'[0-9a-f]{64}')
V2_KEYS = ('kind', 'attributes', 'features', 'chunks', 'feature_norm', 'label_norm', 'corpus', 'settings', 'result',
           'weights_sha256')
MSCR_KEYS = ('config', 'm', 'hop', 'audio_mean', 'audio_std', 'text_mean', 'text_std', 'label_norm')


def _finite_vector(v, n=None):
    try:
        a = np.asarray(v, np.float64)
    except (TypeError, ValueError):
        return False
    return a.ndim == 1 and len(a) > 0 and bool(np.isfinite(a).all()) and (n is None or len(a) == n)


def check_record(raw, p):
    """Stop unless `raw` (the JSON of <name>.meta.json at `p`) is a provenance record this toolkit can use: the
    current format (version 2), an MSCR record, or the flat record of an earlier toolkit version. A record written
    by the toolkit always holds the weights' SHA-256; a null one means a damaged or hand-edited record."""
    fix = 'restore the .meta.json written with the model, or train the model again'
    if not isinstance(raw, dict):
        raise CheckpointError(f'{p}: not a provenance record (a JSON {type(raw).__name__}, not an object); {fix}')
    if 'version' in raw:
        if raw['version'] != RECORD_VERSION:
            raise CheckpointError(f'{p}: record version {raw["version"]!r}; this toolkit reads version {RECORD_VERSION}; '
                                  f'{fix}')
        missing = [k for k in V2_KEYS if k not in raw]
    elif raw.get('model') == 'mscr':
        missing = [k for k in MSCR_KEYS if k not in raw]
    elif 'kind' in raw and 'attributes' in raw:
        raise CheckpointError(f"{p}: no 'version' key in a record of the current format (damaged or edited by "
                              f"hand); {fix}")
    elif raw.get('kind') in ('ranker', 'seq2seq') and 'emo' in raw:
        missing = [k for k in ('feat_mean', 'feat_std') if k not in raw]       # an earlier toolkit's flat record
    else:
        raise CheckpointError(f"{p}: not a provenance record of this toolkit (no 'version' key; keys found: "
                              f"{sorted(raw)[:8]}); {fix}")
    if missing:
        raise CheckpointError(f'{p}: the record lacks {missing}; {fix}')
    if 'weights_sha256' in raw and not (isinstance(raw['weights_sha256'], str)
                                        and SHA_RE.fullmatch(raw['weights_sha256'])):
        raise CheckpointError(f"{p}: weights_sha256 is {raw['weights_sha256']!r}, not a SHA-256; the toolkit always "
                              f"records one, so the record is damaged or was edited; {fix}")
    bad = []
    if 'version' in raw:
        bad += [k for k in ('features', 'chunks', 'feature_norm', 'corpus', 'settings', 'result')
                if not isinstance(raw[k], dict)] + [k for k in ('label_norm',) if not isinstance(raw[k], dict | None)]
        if bad:
            raise CheckpointError(f'{p}: {bad} should be JSON objects; {fix}')
        att = raw['attributes']
        if not (isinstance(att, list) and att and all(a in EMOS for a in att)):
            bad.append(f'attributes {att!r}')
        if raw['kind'] not in KINDS:
            bad.append(f'kind {raw["kind"]!r}')
        fn = raw['feature_norm'] or {}
        dim = (raw['features'] or {}).get('dim')
        if fn.get('mean') is not None and not (_finite_vector(fn['mean'], dim) and _finite_vector(fn['std'], dim)
                                               and min(fn['std']) > 0):
            bad.append('feature_norm mean/std (non-finite, non-positive std, or not of the feature dimension)')
        stats = (raw['label_norm'] or {}).get('stats') or {}
        bad += [f'label_norm stats {e}' for e, v in (stats.items() if isinstance(stats, dict) else [('?', None)])
                if not (_finite_vector(v, 2) and v[1] > 0)]
    elif raw.get('model') == 'mscr':
        cfg = raw['config'] if isinstance(raw['config'], dict) else {}
        for key, d in (('audio', cfg.get('audio_dim')), ('text', cfg.get('text_dim'))):
            if not (_finite_vector(raw[f'{key}_mean'], d) and _finite_vector(raw[f'{key}_std'], d)):
                bad.append(f'{key}_mean/{key}_std (non-finite or not of the {key} dimension {d})')
        lab = raw['label_norm'] if isinstance(raw['label_norm'], dict) else {}
        bad += [f'label_norm {e}' for e in EMOS if not (_finite_vector(lab.get(e), 2) and lab[e][1] > 0)]
    if bad:
        raise CheckpointError(f'{p}: invalid ' + '; '.join(bad) + f'; {fix}')


def upgrade_record(old, weights=None):
    """A record in the current format from one written by an earlier toolkit version (flat keys)."""
    if old.get('version') == RECORD_VERSION:
        return old
    if old.get('model') == 'mscr':
        kind, emos = 'mscr', list(EMOS)
        lab = {'scope': 'train', 'source': display_path(old.get('feature_norm')) if old.get('feature_norm') else
               'Train consensus', 'sha256': None, 'stats': old.get('label_norm')}
        fscope = 'train'
    else:
        kind, emos = old.get('kind'), [old.get('emo')]
        fscope = old.get('feature_norm')
        lab = {'scope': old.get('label_norm'), 'source': _legacy_source(old.get('label_norm_source')), 'sha256': None,
               'stats': {old.get('emo'): [old['label_mean'], old['label_std']]} if 'label_mean' in old else {}}
    preset = old.get('feature_preset') or old.get('audio_preset')
    return {
        'version': RECORD_VERSION, 'kind': kind, 'attributes': emos,
        'features': {'kind': old.get('audio_feature', 'lld'), 'preset': preset, 'hop': old.get('hop'),
                     'dim': len(old['feat_mean']) if old.get('feat_mean') else None,
                     'store': display_path(old.get('features') or old.get('audio_store'))},
        'chunks': {'m': old.get('m'), 'K': old.get('K')},
        'feature_norm': {'scope': fscope, 'source': _legacy_source(old.get('feature_norm_source')), 'sha256': None,
                         'mean': old.get('feat_mean'), 'std': old.get('feat_std')},
        'label_norm': lab,
        'corpus': {'name': Path(old['corpus']).name if old.get('corpus') else None,
                   'root': display_path(old.get('corpus')),
                   'splits': {k: old[v] for k, v in (('Train', 'train_utterances'), ('Validation', 'val_utterances'),
                                                    ('Train pairs', 'train_pairs'), ('Validation pairs', 'val_pairs'))
                              if v in old}},
        'init_from': None if not old.get('init_from') else {'source': 'own', 'path': display_path(old['init_from']),
                                                            'sha256': None},
        'settings': {k: old.get(k) for k in ('epochs', 'batch', 'lr', 'seed', 'freeze', 'iters') if k in old},
        'result': {k: old[k] for k in ('best_epoch', 'val_ccc', 'val_macro_f1', 'val_acc', 'best_iter') if k in old},
        'toolkit_revision': None,
        'weights_sha256': sha256_file(weights) if weights else None,
    }


def _legacy_source(s):
    return display_path(s) if s and ('/' in str(s) or Path(str(s)).exists()) else s


# ================================================================ the authors' release
def release_root(spec):
    """The folder of a --pretrained/--init-from spec if it holds the release layout (NormTerm/ and the model
    folders), else None."""
    if spec is None:
        return None
    p = Path(spec).expanduser()
    return p if (p / 'NormTerm').is_dir() and (p / RELEASE_SEQ2SEQ.split('/')[0]).is_dir() else None


def require_release(spec, flag='--pretrained'):
    root = release_root(spec)
    if root is None:
        raise CheckpointError(f"{flag} {spec}: not the authors' v1.6 release (expected NormTerm/ and "
                              f"{RELEASE_SEQ2SEQ.split('/')[0]}/ in it); pass the root of your clone of "
                              f"Chunk-Level-Emotion-Retrieval, or use --checkpoint for your own models")
    bad = [k for k in RELEASE_NORMTERM if not (root / 'NormTerm' / k).is_file()
           or sha256_file(root / 'NormTerm' / k) != RELEASE_NORMTERM[k]]
    if bad:
        raise CheckpointError(f"{flag} {root}: NormTerm/{bad[0]} is not the file of the authors' v1.6 release "
                              f"(missing or different SHA-256){' and ' + str(len(bad) - 1) + ' more' if len(bad) > 1 else ''}; "
                              f"{flag} takes only the unmodified release; for other models use --checkpoint "
                              f"(with --norm DIR if they have no .meta.json)")
    return root


def release_checkpoint(spec, kind, emo, flag='--pretrained'):
    """The in-memory record of a released model (checksum from RELEASE_SHA256)."""
    root = require_release(spec, flag)
    rel = (RELEASE_RANKER if kind == 'ranker' else RELEASE_SEQ2SEQ).format(emo=emo)
    if kind not in ('ranker', 'seq2seq'):
        raise CheckpointError(f"{flag} {root}: the release holds method-1 models only (rankers and Seq2Seq), not "
                              f"{kind}; pass your {kind} checkpoint with --checkpoint")
    if not (root / rel).is_file():
        raise CheckpointError(f'{flag} {root}: {rel} is missing; restore the release (git checkout in your clone)')
    norm = load_norm(root / 'NormTerm')
    nsha = sha256_folder(root / 'NormTerm', RELEASE_NORMTERM)
    record = {
        'version': RECORD_VERSION, 'kind': kind, 'attributes': [emo],
        'features': {'kind': 'lld', 'preset': 'published', 'hop': 0.016, 'dim': 130, 'store': None},
        'chunks': {'m': 62, 'K': 22},
        'feature_norm': {'scope': 'published', 'source': 'NormTerm of the release', 'sha256': nsha,
                         'mean': norm['feat'][0].tolist(), 'std': norm['feat'][1].tolist()},
        'label_norm': {'scope': 'published', 'source': 'NormTerm of the release', 'sha256': nsha,
                       'stats': {e: list(norm[e]) for e in EMOS}},
        'corpus': {'name': 'MSP-Podcast v1.6', 'root': None, 'splits': {}},
        'init_from': None, 'settings': {'epochs': 20 if kind == 'ranker' else 30, 'batch': 128},
        'result': {}, 'toolkit_revision': None, 'release': RELEASE_NAME,
        'weights_sha256': RELEASE_SHA256[rel],
    }
    return Checkpoint(root / rel, record, 'release')


# ================================================================ finding and opening
def find(spec, kind, emo, ep, batch):
    """The checkpoint file for `kind` and `emo`. spec: None (the repository's default folder and name), a file,
    a path with '{emo}', or a folder (the published names are looked for in it and its model sub-folders)."""
    ours = (ranker_name if kind == 'ranker' else seq2seq_name)(ep, batch, emo)
    pub = ranker_name(20, 128, emo) if kind == 'ranker' else seq2seq_name(30, 128, emo)
    if spec is None:
        p = (RANKER_DIR if kind == 'ranker' else SEQ2SEQ_DIR) / ours
        if p.is_file():
            return p
        how = (f'python chunk_emotion_rankers/training_ranker.py -ep {ep} -batch {batch} -emo {emo}' if kind == 'ranker'
               else f'python training.py -ep {ep} -batch {batch} -emo {emo}')
        raise CheckpointError(f'no {kind} checkpoint {p}; train it with `{how}`, or pass --checkpoint PATH / '
                              f'--pretrained DIR')
    p = Path(str(spec).replace('{emo}', emo)).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise CheckpointError(f'checkpoint {p} does not exist')
    subs = ['.', 'chunk_emotion_rankers/trained_ranker_model_v1.6', 'chunk_emotion_rankers/trained_ranker_model',
            'trained_ranker_model'] if kind == 'ranker' else ['.', 'trained_seq2seq_model_v1.6', 'trained_seq2seq_model']
    for c in (p / s / n for s in subs for n in dict.fromkeys([ours, pub])):
        if c.is_file():
            return c
    pattern = f'*_{emo}_ranker.pth.tar' if kind == 'ranker' else f'*EmoRankerSeq_{emo}.pth.tar'
    found = sorted({c for s in subs for c in (p / s).glob(pattern)})
    if len(found) == 1:
        return found[0]
    if found:
        raise CheckpointError(f'{p} holds several {kind} checkpoints for {emo}: {[f.name for f in found]}; pass one '
                              f'file (or a path with {{emo}})')
    raise CheckpointError(f'{p} holds no {kind} checkpoint for {emo} (looked for {ours} / {pub} in {subs})')


def open_checkpoint(path, kind_hint=None, norm_dir=None, emo_hint=None):
    """Checkpoint of a file written by this toolkit (its record), or, without a record, of a file described
    by `norm_dir` (its NormTerm; kind and attribute from the file name, else the ones asked for)."""
    path = Path(path)
    sha = None
    old = read_record(path)
    if old:
        record = upgrade_record(old, None)
        return Checkpoint(path, record, 'demo' if (record.get('corpus') or {}).get('name') == DEMO_CORPUS else 'own')
    sha = sha256_file(path) if path.is_file() else None
    if sha in RELEASE_BY_SHA:
        raise CheckpointError(f"{path} is {RELEASE_BY_SHA[sha]} of the authors' v1.6 release; load it with "
                              f"--pretrained DIR (DIR = the folder holding NormTerm/), which also checks its "
                              f"normalisation")
    if norm_dir is None:
        raise CheckpointError(f'{path}: no provenance record {sibling(path, ".meta.json").name} next to it, so its '
                              f'normalisation statistics are unknown. For the authors\' release use --pretrained '
                              f'DIR; for other models pass --norm DIR (the NormTerm they were trained with)')
    return Checkpoint(path, record_from_name(path, kind_hint, norm_dir, sha, emo_hint), 'own')


def record_from_name(path, kind_hint, norm_dir, sha, emo_hint=None):
    """Record of a model without one: kind and attribute from its name (when it names none, the ones asked
    for), statistics from `norm_dir`."""
    name = Path(path).name
    kind = 'ranker' if name.endswith('_ranker.pth.tar') else 'seq2seq' if 'EmoRankerSeq' in name else kind_hint
    emos = [e for e in EMOS if f'_{e}_' in name or name.endswith(f'_{e}.pth.tar')] or [emo_hint]
    norm = load_norm(norm_dir)
    nrec = read_norm_record(norm_dir) or {}
    nsha = sha256_folder(norm_dir, RELEASE_NORMTERM)
    scope = 'published' if nsha == sha256_folder_release() else 'train'
    on = {'corpus': (nrec.get('corpus') or {}).get('name'), 'split': nrec.get('split')} if nrec else None
    f = nrec.get('features') or {}
    return {'version': RECORD_VERSION, 'kind': kind, 'attributes': emos[:1],
            'features': {'kind': f.get('kind', 'lld'), 'preset': f.get('preset', 'published'),
                         'hop': f.get('hop', 0.016), 'dim': len(norm['feat'][0]), 'store': None, 'assumed': not f},
            'chunks': {'m': 62, 'K': 22},
            'feature_norm': {'scope': scope, 'source': display_path(norm_dir), 'sha256': nsha, 'computed_on': on,
                             'mean': norm['feat'][0].tolist(), 'std': norm['feat'][1].tolist()},
            'label_norm': {'scope': scope, 'source': display_path(norm_dir), 'sha256': nsha, 'computed_on': on,
                           'stats': {e: list(norm[e]) for e in EMOS}},
            'corpus': {}, 'init_from': None, 'settings': {}, 'result': {}, 'toolkit_revision': None,
            'weights_sha256': sha}


@lru_cache(maxsize=1)
def sha256_folder_release():
    """The folder checksum (sha256_folder) that the release NormTerm has."""
    lines = [f'{n} {RELEASE_NORMTERM[n]}' for n in sorted(RELEASE_NORMTERM)]
    return hashlib.sha256('\n'.join(lines).encode()).hexdigest()


def resolve(kind, emo, pretrained=None, checkpoint=None, norm_dir=None, ep=None, batch=None):
    """The Checkpoint a script asked for: --pretrained DIR (the release), --checkpoint PATH (own models), or
    neither (the repository's default folder: the shipped demo models unless you trained into it)."""
    if pretrained and checkpoint:
        raise CheckpointError('--pretrained and --checkpoint both given; pass one of them')
    if pretrained:
        return release_checkpoint(pretrained, kind, emo)
    path = find(checkpoint, kind, emo, ep, batch)
    if not checkpoint and not read_record(path):
        raise CheckpointError(f'{path}: no provenance record next to it; retrain it or pass --checkpoint/--pretrained')
    return open_checkpoint(path, kind, norm_dir, emo)


def init_checkpoint(spec, kind, emo, ep, batch, norm_dir=None):
    """The Checkpoint a run starts from (--init-from): a file or folder of your own models (with their records,
    or described by --norm), or the authors' release folder (checked by SHA-256)."""
    if spec is None:
        return None
    path = find(spec, kind, emo, ep, batch)
    if not read_record(path) and norm_dir is None and release_root(spec) is not None:
        return release_checkpoint(spec, kind, emo, flag='--init-from')
    return open_checkpoint(path, kind, norm_dir, emo)


def start_model(args, kind, emo, store):
    """(model, init Checkpoint or None) of a training run: fresh weights, or --init-from (checked against -emo
    and the features); --freeze lstm keeps the LSTM weights fixed."""
    init = init_checkpoint(args.init_from, kind, emo, args.epochs, args.batch_size, args.norm)
    if init is None:
        layers = store.meta.get('layers') or []
        if getattr(args, 'layer_sum', False) and len(layers) < 2:
            raise CheckpointError(f'--layer-sum needs a store holding several layers; {store.path} holds '
                                  f'{len(layers) or "no SSL"} layer(s) (extract_features.py --layers 6,12 or all)')
        model = LSTMnet(store.dim, out_dim=2 if kind == 'ranker' else 1,
                        layer_sum=len(layers) if getattr(args, 'layer_sum', False) else 0)
    else:
        init.check(kind, emo, store.meta.get('preset'), store.hop, store.dim)
        init.require_finished(getattr(args, 'allow_unfinished', False))
        init.check_store(store)
        model = load_model(init)
        print(f'{emo}: {kind} initialised from {init.describe()}')
    if args.freeze == 'lstm':
        for p_ in model.lstm.parameters():
            p_.requires_grad_(False)
    return model, init


def announce(ckpts, file=None):
    """Print the model sources; demo models get a loud note (once)."""
    file = file or sys.stderr
    ckpts = [c for c in ckpts if c is not None]
    if any(c.source == 'demo' for c in ckpts):
        bar = '*' * 100
        print(f'{bar}\n* NOTE: using the {DEMO_NOTE}\n{bar}', file=file)
    return ckpts


# ================================================================ loading weights
def _shipped_unmodified(paths):
    """True when every path is a file of this repository tracked by git and unchanged (git restores it)."""
    try:
        rel = [str(Path(p).resolve().relative_to(REPO)) for p in paths]
        tracked = subprocess.run(['git', '-C', str(REPO), 'ls-files', '--error-unmatch', '--', *rel],
                                 capture_output=True, timeout=20)
        clean = subprocess.run(['git', '-C', str(REPO), 'diff', '--quiet', 'HEAD', '--', *rel],
                               capture_output=True, timeout=20)
    except (ValueError, OSError, subprocess.SubprocessError):
        return False
    return tracked.returncode == 0 and clean.returncode == 0


def load_state_dict(path):
    try:
        sd = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise CheckpointError(f'{path}: cannot read the checkpoint ({type(e).__name__}: {str(e)[:200]}); '
                              f'download or train it again') from None
    for key in ('state_dict', 'model'):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise CheckpointError(f'{path}: not a state_dict; expected a model saved as a plain state_dict')
    return {k.removeprefix('module.'): v for k, v in sd.items()}


def load_lstm(path, kind, network=None):
    """LSTMnet (out_dim 2 ranker / 1 seq2seq) loaded strictly from a plain state_dict (ours or published);
    network: LSTMnet keyword arguments (input_dim, hidden, layer_sum) of a model on other features."""
    sd = load_state_dict(path)
    model = LSTMnet(out_dim=2 if kind == 'ranker' else 1, **(network or {}))
    want = model.state_dict()
    bad = [f'{k} is {tuple(sd[k].shape)}, expected {tuple(v.shape)}' for k, v in want.items()
           if k in sd and hasattr(sd[k], 'shape') and sd[k].shape != v.shape]
    bad += [f'{k} missing' for k in want if k not in sd] + [f'unexpected {k}' for k in sd if k not in want]
    if bad:
        i, h = (network or {}).get('input_dim', 130), (network or {}).get('hidden', 130)
        which = 'the published shape' if not network or (i, h) == (130, 130) else 'the shape its record gives'
        raise CheckpointError(f'{path} is not a {kind} checkpoint of {which} (LSTM {i}->{h} x2, fc1 {h}->{h}, fc2 '
                              f'{h}->{2 if kind == "ranker" else 1}'
                              f'{", layer sum" if (network or {}).get("layer_sum") else ""}): ' + '; '.join(bad[:6])
                              + (' ...' if len(bad) > 6 else ''))
    model.load_state_dict(sd, strict=True)
    return model


def load_model(ckpt, device='cpu'):
    """The verified method-1 model of a Checkpoint, in eval mode on `device`."""
    ckpt.verify_bytes()
    return load_lstm(ckpt.path, ckpt.kind, ckpt.network()).to(device).eval()


# ================================================================ saving: records and training runs
def make_record(kind, attributes, store, m, K, fnorm_record, label_record, corpus, splits, init_from, settings,
                result=None):
    """A provenance record (the weights checksum is added when the weights are written)."""
    return {
        'version': RECORD_VERSION, 'kind': kind, 'attributes': list(attributes),
        'features': {'kind': store.meta.get('feature'), 'preset': store.meta.get('preset'), 'hop': store.hop,
                     'dim': store.dim, 'store': display_path(store.path),
                     **{k: store.meta[k] for k in SSL_FEATURE_KEYS if k in store.meta and 'upstream_sha256' in store.meta}},
        'chunks': {'m': m, 'K': K},
        'feature_norm': fnorm_record, 'label_norm': label_record,
        'corpus': {'name': corpus.name, 'root': display_path(corpus.root), 'splits': dict(splits),
                   'fold': getattr(corpus, 'fold', None)},
        'init_from': None if init_from is None else {'source': init_from.source, 'path': display_path(init_from.path),
                                                     'sha256': init_from.sha256,
                                                     **({} if init_from.finished else {'finished': False})},
        'settings': dict(settings), 'result': dict(result or {}),
        'toolkit_revision': toolkit_revision(), 'weights_sha256': None,
    }


def save_model(model, path, record):
    """Write the weights (plain state_dict) and the record with the revision of the code running now, their
    SHA-256 and the record's own checksum, both atomically. The only writer of a record."""
    sd = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    buf = io.BytesIO()
    torch.save(sd, buf)
    data = buf.getvalue()
    atomic_write(path, data)
    record = {k: v for k, v in record.items() if k != 'record_sha256'}
    record.setdefault('finished', False)     # set by Run.finish() when the run ends (a stopped run's model is not)
    net = unwrap(model)
    if isinstance(net, LSTMnet) and (net.layer_sum or net.lstm.input_size != 130):
        record['network'] = {'input_dim': net.lstm.input_size * max(net.layer_sum, 1), 'hidden': net.lstm.hidden_size,
                             'layer_sum': net.layer_sum}
        if net.layer_sum:        # the learnt layer weights, in the record and as a bar chart beside the model
            record['layer_weights'] = net.layer_weights()
            layers = (record.get('features') or {}).get('layers') or list(range(net.layer_sum))
            try:
                from plots import plot_layer_weights
                plot_layer_weights(record['layer_weights'], layers, sibling(path, '.layers.png'), Path(path).name)
            except Exception as e:    # a plotting problem must never stop training
                print(f'note: layer-weight plot not written ({e})', file=sys.stderr)
    record.update(toolkit_revision=toolkit_revision(), weights_sha256=hashlib.sha256(data).hexdigest())
    record['record_sha256'] = record_checksum(record)
    atomic_write_text(sibling(path, '.meta.json'), json.dumps(record, indent=1) + '\n')
    return record


class Run:
    """Files of one training run next to its best checkpoint (only the main process writes): the model and its
    record, <name>.resume.pt (state of every epoch), <name>.log.csv and <name>.loss.png, and <name>.lock while
    the run is active (utils.RunLock: a second run into the same files stops; a lock left by a killed run is
    taken over). Use it as a context (or call close()) so that the lock is released.

    `settings`: the flags that must not change when a run is resumed; --resume with other values stops and
    lists the differences (the restored optimiser would silently keep the old ones).
    Without --resume, files of an earlier run (finished or interrupted) are not replaced unless `overwrite`
    (--overwrite); the shipped demo models, unmodified in git, are the one exception (announced)."""

    def __init__(self, ckpt, fields, is_main=True, resume=False, settings=None, overwrite=False, extra=()):
        self.ckpt, self.is_main, self.settings = Path(ckpt), is_main, settings
        self.meta_path = sibling(ckpt, '.meta.json')
        self.state_path = sibling(ckpt, '.resume.pt')
        self.log_path, self.png_path = sibling(ckpt, '.log.csv'), sibling(ckpt, '.loss.png')
        self.files = [self.ckpt, self.meta_path, self.state_path, self.log_path, self.png_path] + \
            [sibling(ckpt, x) for x in extra]
        self.lock = RunLock(sibling(ckpt, '.lock'), f'the run {self.ckpt}') if is_main else None
        if self.lock:
            self.lock.acquire()
        try:
            if resume and overwrite:
                raise CheckpointError('--resume continues the earlier run, --overwrite replaces it: pass one of them')
            if resume and not self.state_path.exists():
                raise CheckpointError(f'--resume: no resume state {self.state_path} (nothing to continue); run '
                                      f'without --resume')
            if resume and settings is not None:
                self.check_settings(torch.load(self.state_path, map_location='cpu', weights_only=False))
            if not resume and is_main:
                self.clear_earlier_run(overwrite)
            if is_main:
                from utils import CSVLogger
                self.logger = CSVLogger(self.log_path, fields, resume=resume)
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.lock:
            self.lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def clear_earlier_run(self, overwrite):
        """Files of an earlier run: refused unless --overwrite (then removed, so nothing of the old run is left
        mixed with the new one); the shipped demo files, unmodified in git, are replaced with a note."""
        old = [f for f in self.files if f.exists()]
        if not old:
            return
        if not overwrite and not _shipped_unmodified(old):
            raise CheckpointError(f'{self.ckpt.parent} already holds {self.ckpt.name}, {self.describe_earlier()} '
                                  f'(files: {", ".join(f.name for f in old)}); pass --resume to continue it, '
                                  f'--overwrite to replace it, or another --out/--checkpoint')
        if not overwrite:
            print(f'note: replacing the shipped demo model {display_path(self.ckpt)} and its files (`git checkout -- '
                  f'{display_path(self.ckpt.parent)}` restores them)', file=sys.stderr)
        for f in old:
            f.unlink()

    def describe_earlier(self):
        """'a finished run (best_epoch=3, val_ccc=0.81)' or 'an interrupted run (last saved epoch 2 of 30)'."""
        rec, state = {}, None
        try:
            rec = json.loads(self.meta_path.read_text()) if self.meta_path.exists() else {}
            state = torch.load(self.state_path, map_location='cpu', weights_only=False) \
                if self.state_path.exists() else None
        except Exception:       # a damaged file of the earlier run: still refuse, just say less
            pass
        res = rec.get('result') or {k: rec[k] for k in ('best_iter', 'best_val_loss') if k in rec}
        total = (rec.get('settings') or {}).get('epochs') or rec.get('iters')
        done = state.get('epoch') if isinstance(state, dict) else None
        if done is not None and total and done + 1 < total:
            return f'an interrupted run (last saved {"iteration" if rec.get("iters") else "epoch"} {done} of {total})'
        best = ', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in res.items()
                         if not isinstance(v, dict))
        return f'a finished run{f" ({best})" if best else ""}' if rec or state is None else 'an earlier run'

    def check_settings(self, state):
        old = state.get('settings')
        if old is None:
            return
        diff = [f'{k}: was {old.get(k)!r}, now {v!r}' for k, v in self.settings.items() if k in old and old[k] != v]
        if diff:
            raise CheckpointError(f'--resume {self.state_path}: the interrupted run used other settings ('
                                  + '; '.join(diff) + '); resume with the same values, or start a new run '
                                  'without --resume (another --checkpoint/--out)')
        unknown = [k for k in self.settings if k not in old]
        if unknown and self.is_main:
            print(f'note: --resume {self.state_path.name}: the interrupted run did not record {unknown} (an earlier '
                  f'toolkit version); those settings are not compared', file=sys.stderr)

    def save_best(self, model, record):
        if self.is_main:
            return save_model(model, self.ckpt, record)

    def finish(self, **extra):
        """Mark the saved model's record as the result of a finished run (re-checksummed): testing.py and
        predict.py refuse a model whose record says finished: false."""
        if not (self.is_main and self.meta_path.is_file()):
            return
        rec = json.loads(self.meta_path.read_text())
        rec = {k: v for k, v in rec.items() if k != 'record_sha256'}
        rec.update(extra, finished=True)
        rec['record_sha256'] = record_checksum(rec)
        atomic_write_text(self.meta_path, json.dumps(rec, indent=1) + '\n')

    def save_state(self, model, opt, scaler, epoch, best, best_epoch, rng=None):
        """The resume state; every rank calls it (the ranks' random states are gathered: utils.rank_rng_states),
        or passes `rng`, the list that call returned, when only the main process gets here."""
        from utils import rank_rng_states
        if rng is None:
            rng = rank_rng_states(next(unwrap(model).parameters()).device)
        if self.is_main:
            atomic_torch_save({'model': unwrap(model).state_dict(), 'optimizer': opt.state_dict(),
                               'scaler': scaler.state_dict(), 'epoch': epoch, 'best': best,
                               'best_epoch': best_epoch, 'rng_by_rank': rng, 'settings': self.settings}, self.state_path)

    def start(self, model, opt, scaler, resume, world, device, what, best):
        """-> (model for the steps (DDP-wrapped when world > 1), first epoch, best, best epoch); with `resume`
        the interrupted run's state is restored."""
        start, best_ep = 0, -1
        if resume:
            start, best, best_ep = self.load_state(model, opt, scaler)
            if self.is_main:
                print(f'{what}: resuming at epoch {start} (best {best:.4f} at epoch {best_ep})')
        net = model
        if world > 1:
            net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda'
                                                            else None)
        return net, start, best, best_ep

    def load_state(self, model, opt, scaler):
        """-> (next epoch, best, best_epoch); restores weights, optimizer, scaler and this rank's random states.
        A run saved by N processes resumes on M: rank r takes the state rank r saved; ranks the interrupted run
        did not have keep their seeded start (the run then differs from the uninterrupted one, as the data
        shards and gradient sums do: docs/reproducibility.md)."""
        import torch.distributed as dist

        from utils import set_rng_state
        s = torch.load(self.state_path, map_location='cpu', weights_only=False)
        unwrap(model).load_state_dict(s['model'])
        opt.load_state_dict(s['optimizer'])
        scaler.load_state_dict(s['scaler'])
        ddp = dist.is_available() and dist.is_initialized()
        rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
        states = s.get('rng_by_rank')
        if states is None:       # written before the states were per rank: rank 0's, the CUDA ones of every device
            old = s['rng']
            cuda = old.get('cuda') or []
            dev = torch.cuda.current_device() if torch.cuda.is_available() else None
            states = [{**old, 'cuda': cuda[dev] if dev is not None and dev < len(cuda) else None}]
        if rank < len(states):
            set_rng_state(states[rank])
        if len(states) != world and self.is_main:
            print(f'note: {self.state_path.name} was saved by {len(states)} process(es) and resumes on {world}: the '
                  f'random streams of ranks 0..{min(world, len(states)) - 1} continue, the run is not bit-identical to '
                  f'an uninterrupted one', file=sys.stderr)
        return s['epoch'] + 1, s['best'], s['best_epoch']

    def log(self, **row):
        if self.is_main:
            self.logger.log(**row)
            from utils import plot_curves
            try:
                plot_curves(self.log_path, self.png_path, title=self.ckpt.name)
            except Exception as e:   # a plotting problem must never stop training
                print(f'note: loss plot not written ({e})', file=sys.stderr)
