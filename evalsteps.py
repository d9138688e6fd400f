"""Steps shared by the evaluation protocols (crossval.py, crosscorpus.py; docs/protocols.md): run a project
script's main() with an argv (its output appended to a log file), done markers keyed on settings, the
feature store of a corpus, ranking sequences (released rankers, rankers trained on a fold, or constant), and
pooled predictions -> metrics with bootstrap intervals.

Nothing here re-implements training or testing: every model is trained by training.py and tested by
testing.py, exactly as a user would run them.
"""
import contextlib
import hashlib
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

import cli
import identity
import metrics as M
from errors import ToolkitError
from utils import EMOS, atomic_write_text

REPO = Path(__file__).resolve().parent
RANKER_DIR = REPO / 'chunk_emotion_rankers'
K_CHUNKS = 22


class StepError(ToolkitError):
    """A step (a project script) failed; the message has its command line and log file."""


def settings_key(settings):
    """Short stable hash of a settings dict (what a done marker is keyed on)."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def is_done(marker, settings):
    """True when `marker` exists, was written for exactly these settings, and the outputs it records (SHA-256 of
    each, relative to the marker's folder) are still there unchanged: a step whose result file was deleted or
    edited since is redone, never reported from the marker."""
    p = Path(marker)
    if not p.is_file():
        return False
    try:
        rec = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(rec, dict) or rec.get('key') != settings_key(settings):
        return False
    for rel, sha in (rec.get('outputs') or {}).items():
        f = p.parent / rel
        if not f.is_file() or identity.file_sha(f) != sha:
            print(f'note: {f} was {"removed" if not f.is_file() else "changed"} after {p.name} marked the step done; '
                  f'redoing the step', file=sys.stderr)
            return False
    return True


def mark_done(marker, settings, outputs=(), **extra):
    """Write the done marker of a step: its settings key and the SHA-256 of its `outputs` (files whose content the
    protocol reads back later)."""
    marker = Path(marker)
    outs = {os.path.relpath(Path(f).absolute(), marker.parent.absolute()): identity.file_sha(f) for f in outputs}
    atomic_write_text(marker, json.dumps({'key': settings_key(settings), 'settings': settings,
                                          'finished': time.strftime('%Y-%m-%d %H:%M:%S'),
                                          **({'outputs': outs} if outs else {}), **extra},
                                         indent=1, default=str))


def run_step(module, argv, log):
    """`module.main(argv)` (a top-level script or one of chunk_emotion_rankers/) with stdout and stderr appended
    to `log` -> (what main returned, seconds). A failure raises StepError naming the command and the log."""
    if str(RANKER_DIR) not in sys.path:
        sys.path.append(str(RANKER_DIR))
    mod = importlib.import_module(module)
    argv = [str(a) for a in argv]
    cmd = f'python {Path(mod.__file__).relative_to(REPO)} ' + ' '.join(argv)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, 'a') as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f'$ {cmd}', flush=True)
        try:
            out = mod.main(argv)
        except SystemExit as e:
            if e.code not in (None, 0):
                raise StepError(f'{cmd}\n  exited with {e.code}; see {log}') from None
            out = None
        except Exception as e:
            traceback.print_exc(file=f)
            raise StepError(f'{cmd}\n  failed: {type(e).__name__}: {e}\n  log: {log}') from None
    return out, time.perf_counter() - t0


def ensure_features(corpus, features, log, workers=2, kind='lld'):
    """The feature store of `corpus` (a Corpus): `features` or the default store of the corpus's content
    (identity.default_store: features/<corpus name>/<kind>, or features/<name>-<audio hash>/<kind> when that one
    holds another corpus's audio); an LLD store is extracted with extract_features.py when it is missing or
    incomplete (that script resumes); another kind (an SSL store, docs/ssl.md) must be there already -> path.
    A given store extracted from other audio than the corpus holds is refused."""
    import identity
    from feature_store import FeatureStore
    path = Path(features) if features else identity.default_store(corpus, kind)
    meta = path / 'meta.json'
    if kind != 'lld' and not (meta.exists() and json.loads(meta.read_text()).get('complete')):
        raise ToolkitError(f'{corpus.name}: no complete feature store {path}; extract it first, e.g.\n  python '
                           f'extract_features.py --corpus {corpus.root} --feature ssl --upstream DIR --out {path}')
    if not (meta.exists() and json.loads(meta.read_text()).get('complete')):
        print(f'  extracting LLDs of {corpus.name} -> {path} (log {log})', flush=True)
        run_step('extract_features', ['--corpus', corpus.root, '--feature', 'lld', '--out', path, '--workers', workers,
                                      '--device', 'cpu'], log)
    identity.check_store(FeatureStore(path), corpus)
    return path


def inputs_of(corpus, features):
    """Fingerprints of a protocol step's data inputs (identity.py): the corpus (labels, folds, audio) and the
    feature store (extraction settings + sources), never their paths."""
    import identity
    from feature_store import FeatureStore
    return {'corpus': identity.corpus_fp(corpus)['sha256'],
            'features': identity.store_fp(FeatureStore(features))['sha256'] if features else None}


def upstream_fp(name):
    """Content fingerprint of an SSL upstream (features.upstream_identity: its weight files and config), None for
    None; a name with no local files yet is kept as given (the extraction step checksums it once downloaded)."""
    if not name:
        return None
    from features import upstream_identity
    try:
        return upstream_identity(name)['sha256']
    except ToolkitError:
        return str(name)


def path_fp(path):
    """Content fingerprint of a model given by path (a file, or a folder such as the authors' release root):
    SHA-256 of the file, or a digest of the model and NormTerm files under the folder; None for None."""
    import identity
    if path is None:
        return None
    p = Path(path)
    if p.is_file():
        return identity.file_sha(p)
    files = sorted(q for pat in ('*.pth.tar', '*.mat', '*.meta.json') for q in p.rglob(pat) if '.git' not in q.parts)
    return identity.digest([[str(q.relative_to(p)), identity.file_sha(q)] for q in files])


def merge_rankseq(files, out):
    """Several {FileName: {"ChunkRankSeq": [...]}} JSON files -> one (later files do not overwrite)."""
    merged = {}
    for p in files:
        if Path(p).is_file():
            for k, v in json.loads(Path(p).read_text()).items():
                merged.setdefault(k, v)
    atomic_write_text(out, json.dumps(merged))
    return merged


def released_rankseq(corpus_root, features, pretrained, emos, out, common, folds=()):
    """Ranking sequences from the authors' released rankers of every utterance of the default split (-set all)
    and of any fold in `folds` whose utterances that left out -> folder with training_<Emo>.json holding them
    all (training.py reads the Train names of any fold from it)."""
    from corpus import Corpus
    out = Path(out)
    for emo in emos:
        settings = {'what': 'released rankseq', 'inputs': inputs_of(Corpus(corpus_root, echo=False), features),
                    'pretrained': 'release v1.6 (checked by SHA-256)', 'emo': emo, 'folds': [str(f) for f in folds]}
        if is_done(out / f'.done_{emo}.json', settings):
            continue
        files, have = [], set()
        for fold in [None, *folds]:
            if fold is not None:
                fc = Corpus(corpus_root, fold=fold)
                if {n for split in ('Train', 'Validation', 'Test') for n in fc.files(split)} <= have:
                    continue
            raw = out / 'raw' / (fold or 'default')
            argv = ['-emo', emo, '-set', 'all', '--pretrained', pretrained, '--corpus', corpus_root, '--features',
                    features, '--out', raw, *step_args(common, limit=False)] + (['--fold', fold] if fold else [])
            run_step('generate_ranking_seqence', argv, out / f'rankseq_{emo}.log')
            files += [raw / f'{s}_{emo}.json' for s in ('training', 'validation', 'testing')]
            have = set(merge_rankseq(files, out / f'training_{emo}.json'))
        mark_done(out / f'.done_{emo}.json', settings)
    return out


def constant_rankseq(corpus, out, emos=EMOS):
    """All ranks equal: the target curve is then constant at the utterance mean (the Seq2Seq model learns
    from the utterance labels only)."""
    out = Path(out)
    seq = {n: {'ChunkRankSeq': [1] * K_CHUNKS} for n in corpus.labels['FileName']}
    for e in emos:
        atomic_write_text(out / f'training_{e}.json', json.dumps(seq))
    return out


def step_args(common, limit=True):
    """--device/--workers(/--limit) flags shared by the step scripts, from a dict. Ranking sequences are made for
    every utterance (limit=False), so that a --limit run finds the sequences of whichever subset it draws."""
    a = ['--device', common.get('device') or 'cpu', '--workers', common.get('workers', 0)]
    return a + (['--limit', common['limit']] if limit and common.get('limit') else [])


# ---------------------------------------------------------------- pooled predictions -> metrics
def label_source(corpus):
    """Where the corpus's A/V/D labels come from, from the converters' LabelSource/DerivedFrom columns:
    'raters', 'derived from intended category', ... ('consensus labels' when the corpus does not say)."""
    lab = corpus.labels
    if 'LabelSource' not in lab.columns:
        return 'consensus labels'
    out = []
    for src, g in lab.groupby(lab['LabelSource'].fillna('?').astype(str)):
        how = g['DerivedFrom'].dropna().astype(str).unique() if 'DerivedFrom' in g.columns else []
        out.append(src + (f" from {', '.join(sorted(h for h in how if h))}" if src == 'derived' and len(how) else ''))
    return '; '.join(out)


def pooled_metrics(corpus, by_emo, resample, n_boot):
    """{emo: DataFrame with FileName, Label, Pred} (pooled test predictions) -> {emo: metrics.evaluate(...)}.
    Speakers and categories come from `corpus`; the arousal AUC is on the Act predictions only. An
    utterance predicted twice is an error (the folds' Test parts must not overlap)."""
    out = {}
    for emo, df in by_emo.items():
        dup = df.FileName.duplicated()
        if dup.any():
            raise ToolkitError(f'{emo}: {int(dup.sum())} utterance(s) are in the Test part of more than one fold '
                               f'(e.g. {df.FileName[dup].iloc[0]}); the pooled metrics need disjoint Test parts')
        spk = M.corpus_speakers(corpus, df.FileName)
        unit, note = M.bootstrap_unit(resample, spk)
        cats = M.corpus_categories(corpus, df.FileName)
        r = M.evaluate(df.Pred.to_numpy(), df.Label.to_numpy(), spk if unit == 'speakers' else None,
                       cats if emo == 'Act' else None, resample=unit, n_boot=n_boot)
        if emo != 'Act':       # per-category means of every attribute, the AUC of arousal only
            r['category_means'] = M.category_means(df.Pred, df.Label, cats)
        r['bootstrap']['note'] = note
        out[emo] = r
    return out


def add_train_args(p, what):
    """-emo/-ep/-batch/--lr/--seed of the training runs crossval.py and crosscorpus.py start."""
    cli.add_run_args(p, 30, 128, what, 'utterances per training step', emo_default='all')
    p.add_argument('--lr', type=cli.positive_float, default=None, help='Adam learning rate (training.py default 1e-3)')
    p.add_argument('--seed', type=cli.seed_int, default=0, help='random seed of every training run')


def add_step_args(p):
    """--device/--workers/--limit of every step, and the bootstrap of the reported intervals."""
    p.add_argument('--device', default=None, help='cpu, cuda, cuda:1 (default: CUDA when available)')
    p.add_argument('--workers', type=cli.nonneg_int, default=0, help='DataLoader worker processes of every step')
    p.add_argument('--limit', type=cli.positive_int, default=None, help='smoke tests only: at most N utterances per '
                   'split in every step (the numbers are then meaningless)')
    M.add_bootstrap_args(p)
