"""Feature and label normalisation: the statistics, and the one resolver of every scope.

Feature scopes (--feature-norm) mean the same for Seq2Seq, rankers, MSCR and predict.py
(docs/features.md, "Normalisation scopes"):
  published  the statistics of the authors' v1.6 release (MSP-Podcast v1.6 Train split): the NormTerm of
             --pretrained/--init-from DIR, or a --norm folder recognised as that NormTerm by its checksums
  train      the statistics of the Train split of the corpus the model is trained on: computed from the
             feature store (or read from --norm DIR, a folder norm_para.py wrote) when training; the
             statistics stored with the checkpoint (or --norm DIR) when testing or predicting
  speaker    per-speaker statistics of the data being processed (speaker IDs from the corpus label file;
             predict.py: the sub-folder of each file, or a file,speaker CSV)
  corpus     statistics of all the data being processed (the corpus, or every file given to predict.py)
Label statistics (--label-norm published|train) map predictions back to the rating scale; they are computed
once per run and stored with the model, which is always de-normalised with its own label statistics.
Statistics: per-dimension mean and population std (ddof=0) over every frame, float64 moments merged with
Chan et al.'s parallel update (memory independent of corpus size), non-finite values left out per dimension.
"""
import sys
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

import identity
from checkpoints import RELEASE_NORMTERM, display_path, sha256_folder, sha256_folder_release
from errors import ToolkitError
from utils import EMO_COL, EMOS, EPS_STD, NORM_RECORD, load_norm, normalize_feats, read_norm_record

SCOPES = ('published', 'train', 'speaker', 'corpus')
LABEL_SCOPES = ('published', 'train')
MIN_SECONDS = 30.0
RELEASE_COMPUTED_ON = {'corpus': 'MSP-Podcast v1.6', 'split': 'Train'}      # 'corpus'/'speaker' statistics from less audio than this are flagged as unreliable


class NormError(ToolkitError):
    """Normalisation that cannot be resolved as asked."""


# ================================================================ statistics
class RunningStats:
    """Per-dimension count, mean and M2 (sum of squared deviations), merged batch by batch (Chan)."""

    def __init__(self, dim):
        self.n = np.zeros(dim, np.float64)
        self.mean = np.zeros(dim, np.float64)
        self.m2 = np.zeros(dim, np.float64)
        self.frames = 0

    def update(self, x, block=65536):
        x = np.asarray(x)
        self.frames += len(x)
        for b in range(0, len(x), block):  # bounded temporaries even for very long utterances
            xb = x[b:b + block].astype(np.float64)
            ok = np.isfinite(xb)
            nb = ok.sum(0).astype(np.float64)
            xb = np.where(ok, xb, 0.0)
            mb = xb.sum(0) / np.maximum(nb, 1)
            m2b = (np.where(ok, xb - mb, 0.0) ** 2).sum(0)
            n = self.n + nb
            d = mb - self.mean
            w = np.divide(nb, n, out=np.zeros_like(n), where=n > 0)
            self.mean += d * w
            self.m2 += m2b + d ** 2 * self.n * w
            self.n = n

    @property
    def std(self):
        return np.sqrt(np.divide(self.m2, self.n, out=np.zeros_like(self.m2), where=self.n > 0))


def feature_stats(store, names, progress=True):
    """(mean, std, n_frames, used names, missing names) over `names` in a FeatureStore."""
    rs = RunningStats(store.dim)
    used, missing = [], []
    for n in tqdm(names, desc='feature stats', unit='utt', disable=not progress, dynamic_ncols=True):
        if n not in store:
            missing.append(n)
            continue
        rs.update(store.get(n))
        used.append(n)
    return rs.mean, rs.std, rs.frames, used, missing


def norm_stats(store, names, by=None, progress=False):
    """Mean and std (floored at EPS_STD) of all frames of `names`; with `by` (name -> group or None) a dict
    {group: (mean, std)}."""
    names = [n for n in names if n in store]
    if not names:
        raise NormError(f'none of the requested utterances is in the feature store {store.path}')
    if by is None:
        mean, std, *_ = feature_stats(store, names, progress=progress)
        return mean, np.maximum(std, EPS_STD)
    groups = {}
    for n in names:
        if by.get(n) is not None:
            groups.setdefault(by[n], []).append(n)
    return {g: norm_stats(store, ns) for g, ns in groups.items()}


def label_stats(corpus, split='Train', emos=EMOS):
    """{'Act': (mean, std), ...} of the consensus labels over a split (population std, finite values)."""
    df = corpus.labels.set_index('FileName').loc[corpus.files(split)]
    out = {}
    for e in emos:
        v = df[EMO_COL[e]].to_numpy(np.float64)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            raise NormError(f'{corpus.consensus_path}: no finite {EMO_COL[e]} label in the {split} split')
        out[e] = (float(v.mean()), float(max(v.std(), EPS_STD)))
    return out


# ================================================================ MSCR statistics (docs/mscr.md, "Normalisation")
def mscr_feature_stats(store, names, level='utterance'):
    """(mean, std) per dimension for MSCR normalisation (docs/mscr.md, "Normalisation").

    level 'utterance' (as published): mean and population std, over the utterances `names`, of each
    utterance's mean feature vector (NaN ignored); streaming (memory independent of the corpus size).
    level 'frame': mean and std over all frames (tokens) of `names`, the method-1 statistics.
    A zero std becomes a small epsilon."""
    names = [n for n in names if n in store]
    if not names:
        raise NormError(f'none of the Train utterances is in the feature store {store.path}; extract its '
                           f'features first (extract_features.py)')
    if level == 'frame':
        return norm_stats(store, names)
    lengths = store.lengths()
    names = [n for n in names if lengths[n] > 0]
    s, s2 = np.zeros(store.dim), np.zeros(store.dim)
    for n in names:
        with warnings.catch_warnings():      # an all-NaN dimension of one utterance counts as 0
            warnings.simplefilter('ignore', RuntimeWarning)
            u = np.nan_to_num(np.nanmean(np.asarray(store.get(n), np.float64), axis=0))
        s, s2 = s + u, s2 + u * u
    k = max(len(names), 1)
    mean = s / k
    std = np.sqrt(np.maximum(s2 / k - mean * mean, 0.0))
    return mean, np.maximum(std, EPS_STD)


def mscr_norm(corpus, audio, text, train_names, level='utterance'):
    """{'audio': (mean, std), 'text': (mean, std), 'Act'|'Dom'|'Val': (mean, std)} from the Train split:
    feature statistics at `level` for each store, labels with the Train consensus mean and std."""
    return {'audio': mscr_feature_stats(audio, train_names, level),
            'text': mscr_feature_stats(text, train_names, level),
            **label_stats(corpus, 'Train')}


# ================================================================ NormTerm folders
class NormDir:
    """A NormTerm folder: its statistics, checksum, record, and whether it is the authors' release NormTerm.

    `features` ({'preset', 'hop', 'dim'}) and `computed_on` ({'corpus', 'split'}) come from its record
    (normterm.json, written by norm_para.py), from the release table for the authors' NormTerm, or are
    unknown ({} / None) for a folder written before records existed: then only the dimension and the values
    can be checked, and a note says so."""

    def __init__(self, path):
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise NormError(f'--norm {self.path}: no such folder; pass the NormTerm folder the model was trained '
                            f'with (norm_para.py writes one)')
        self.stats = load_norm(self.path, need=('feat',))
        self.sha256 = sha256_folder(self.path, RELEASE_NORMTERM)
        self.release = self.sha256 == sha256_folder_release()
        self.scope = 'published' if self.release else 'train'
        rec = read_norm_record(self.path)
        if self.release:
            self.features = {'kind': 'lld', 'preset': 'published', 'hop': 0.016, 'dim': 130}
            self.computed_on = dict(RELEASE_COMPUTED_ON)
        elif rec is not None:
            self.features = dict(rec['features'])
            self.computed_on = {'corpus': (rec.get('corpus') or {}).get('name'), 'split': rec.get('split'),
                                'speakers': rec.get('speakers')}      # {ID: fingerprint} (identity.py)
        else:
            self.features, self.computed_on = {}, None
            print(f'note: {self.path} has no record ({NORM_RECORD}; written before norm_para.py wrote one, or '
                  f'by other code): its feature preset, corpus and split cannot be checked, only its dimension and '
                  f'values. Write it again with norm_para.py to have them checked', file=sys.stderr)

    def get(self, key):
        if key not in self.stats:
            self.stats.update(load_norm(self.path, need=(key,)))
        return self.stats[key]

    def record(self, key='feat'):
        src = 'NormTerm of the release' if self.release else display_path(self.path)
        return {'scope': self.scope, 'source': src, 'sha256': self.sha256, 'computed_on': self.computed_on}

    def check_features(self, preset=None, hop=None, dim=None, what='the features'):
        """Stop unless these statistics describe features of (preset, hop, dim) (what the record says, and the
        dimension of the statistics themselves)."""
        got = len(self.stats['feat'][0])
        f = self.features
        if dim is not None and got != dim:
            raise NormError(f'--norm {self.path} holds {got}-dim feature statistics, {what} have {dim} dims; pass the '
                            f'NormTerm of these features (norm_para.py)')
        if preset is not None and f.get('preset') is not None and f['preset'] != preset:
            raise NormError(f'--norm {self.path} was computed on {f["preset"]!r} features, {what} are {preset!r}; '
                            f'pass the NormTerm of the same feature preset (norm_para.py --features ...)')
        if hop is not None and f.get('hop') is not None and abs(float(f['hop']) - float(hop)) > 1e-9:
            raise NormError(f'--norm {self.path} was computed at a {f["hop"]} s hop, {what} have {hop} s; pass the '
                            f'NormTerm of these features')


def norm_dir(path):
    """NormDir of a --norm folder (None without one); read once per folder and content in a process."""
    if path is None:
        return None
    p = Path(path).expanduser()
    key = (str(p.resolve()), sha256_folder(p, RELEASE_NORMTERM) if p.is_dir() else None)
    if key not in _NORM_DIRS:
        _NORM_DIRS[key] = NormDir(p)
    return _NORM_DIRS[key]


_NORM_DIRS = {}


def check_not_under_test(computed_on, desc, corpus, splits, leaks_checked=False):
    """Stop when statistics a model is evaluated with (`desc`: what they are) were computed on a split being
    evaluated (their record says so): the score would use the test data's own statistics under a 'train' label.
    Statistics with speaker fingerprints are compared by speaker; leaks_checked: the caller compares them itself
    (identity.check_speaker_leaks, which --allow-seen-speakers turns into a flag on every output row)."""
    on = computed_on or {}
    if on.get('speakers'):      # by speaker (the audio of their utterances), never by corpus folder and split name
        seen = identity.seen_speakers(on['speakers'], identity.speakers_of(
            corpus, [n for sp in splits for n in corpus.files(sp)]))
        if not seen:
            return
        if not (on.get('corpus') == corpus.name and on.get('split') in splits):
            if leaks_checked:       # the caller runs identity.check_speaker_leaks (with --allow-seen-speakers)
                return
            raise NormError(f'the {desc} were computed on the {on.get("split")} split of {on.get("corpus")}, which '
                            f'saw tested speaker(s) {", ".join(seen[:8])} (same audio, whatever the folder or split '
                            f'names): the score would use the test data\'s own statistics. Use statistics of a Train '
                            f'part without these speakers (norm_para.py --split Train), or --feature-norm corpus to '
                            f'normalise the evaluated data on itself knowingly (metrics.csv then says so)')
    if on.get('corpus') == corpus.name and on.get('split') in splits and on.get('split') != 'Train':
        raise NormError(f'the {desc} were computed on the {on["split"]} split of {corpus.name}, the split under '
                        f'test: the score would use the test data\'s own statistics. Use statistics of the Train split '
                        f'(norm_para.py --split Train), or --feature-norm corpus to normalise the evaluated data on '
                        f'itself knowingly (metrics.csv then says so)')


class FeatNorm:
    """Per-utterance feature z-normalisation: one (mean, std) pair, or one per group (speaker)."""

    def __init__(self, mean, std, scope='train', source='', groups=None, group_of=None, sha256=None,
                 computed_on=None):
        self.computed_on = computed_on      # {'corpus', 'split'} the statistics come from, None when unknown
        self.mean = np.asarray(mean, np.float32)
        self.std = np.maximum(np.asarray(std, np.float32), EPS_STD)
        self.scope, self.source, self.sha256 = scope, str(source), sha256
        self.groups = {g: (np.asarray(m, np.float32), np.maximum(np.asarray(s, np.float32), EPS_STD))
                       for g, (m, s) in (groups or {}).items()}
        self.group_of = dict(group_of or {})

    def stats(self, name):
        g = self.group_of.get(name)
        return self.groups.get(g, (self.mean, self.std))

    def __call__(self, name, x):
        """z-normalise, NaN -> 0, clip to [-3, 3]."""
        return normalize_feats(x, *self.stats(name))

    def record(self):
        """The provenance entry; global statistics travel with the model, data-driven scopes do not."""
        out = {'scope': self.scope, 'source': self.source, 'sha256': self.sha256, 'computed_on': self.computed_on,
               'mean': None, 'std': None}
        if self.scope in ('published', 'train'):
            out.update(mean=self.mean.astype(np.float64).tolist(), std=self.std.astype(np.float64).tolist())
        return out

    def describe(self):
        return f'{self.scope} ({self.source})'


# ================================================================ resolving a scope
def data_norm(scope, store, corpus, names=None):
    """'train' (computed on the Train split), 'corpus' or 'speaker' statistics of a feature store."""
    everything = [n for n in (corpus.files() if names is None else names) if n in store]
    if scope == 'train':
        train = [n for n in corpus.files('Train') if n in store]
        if not train:
            n_train = len(corpus.files('Train'))
            raise NormError(f'{corpus.consensus_path}: none of its {n_train} Train utterances is in the feature store '
                            f'{store.path}, so there are no Train statistics; extract them (python extract_features.py '
                            f'--corpus {corpus.root} --out {store.path}), or use --feature-norm corpus|speaker or '
                            f'--norm DIR')
        return FeatNorm(*norm_stats(store, train), 'train', f'Train split of {corpus.name}',
                        computed_on={'corpus': corpus.name, 'split': 'Train',
                                     'speakers': identity.speakers_of(corpus, train)})
    mean, std = norm_stats(store, everything)
    if scope == 'corpus':
        return FeatNorm(mean, std, 'corpus', corpus.name)
    spk = {n: corpus.speaker(n) for n in everything}
    known = sum(v is not None for v in spk.values())
    if known == 0:
        raise NormError(f'{corpus.consensus_path} has no speaker IDs (SpkrID column empty or Unknown), so '
                        f'per-speaker normalisation is impossible; use --feature-norm corpus or train')
    if known < len(spk):
        print(f'note: {len(spk) - known} of {len(spk)} utterances have no speaker ID; they use corpus statistics')
    return FeatNorm(mean, std, 'speaker', corpus.name, norm_stats(store, everything, by=spk), spk)


def _folder_norm(nd, scope):
    if scope == 'published' and not nd.release:
        raise NormError(f"--norm {nd.path} is not the NormTerm of the authors' v1.6 release (its checksums "
                        f"differ), so it cannot serve --feature-norm published; drop --feature-norm to use it as "
                        f"Train statistics, or pass the release's NormTerm")
    if scope == 'train' and nd.release:
        raise NormError(f"--norm {nd.path} is the NormTerm of the authors' v1.6 release: those are the "
                        f"'published' statistics; use --feature-norm published (or another folder)")
    return FeatNorm(*nd.get('feat'), nd.scope, nd.record()['source'], sha256=nd.sha256, computed_on=nd.computed_on)


def training_norm(fscope, lscope, store, corpus, norm_path=None, release=None, emos=EMOS):
    """Normalisation of a training run -> (FeatNorm, {emo: (mean, std)}, label record).

    release: the Checkpoint of a released model the run starts from (--init-from the release), whose
    published statistics become the default. norm_path: --norm DIR."""
    nd = norm_dir(norm_path)
    pub = release.feat_stats() if release is not None and release.source == 'release' else None
    fscope = fscope or (nd.scope if nd else 'published' if pub is not None else 'train')
    lscope = lscope or ('published' if fscope == 'published' else 'train')
    if fscope not in SCOPES or lscope not in LABEL_SCOPES:
        raise NormError(f'unknown normalisation scope {fscope!r}/{lscope!r}; use one of {SCOPES} / {LABEL_SCOPES}')
    if nd is not None:
        nd.check_features(store.meta.get('preset'), store.hop, store.dim, f'the feature store {store.path}')
        for key in ('upstream_sha256', 'layers'):       # SSL stores: NormTerm per upstream and layer set
            if (nd.features or {}).get(key) != store.meta.get(key) and key in (nd.features or {}):
                raise NormError(f'--norm {nd.path} holds statistics of SSL features of '
                                f'{nd.features.get("upstream")!r} layers {nd.features.get("layers")}, the store '
                                f'{store.path} holds {store.meta.get("upstream")!r} layers {store.meta.get("layers")}; '
                                f'compute the NormTerm of this store (python norm_para.py --features {store.path})')
        on = nd.computed_on or {}
        if on.get('speakers'):          # by speaker: statistics that saw a speaker of this run's Test part
            test = identity.speakers_of(corpus, corpus.files('Test'))
            seen = identity.seen_speakers(on['speakers'], test)
            if seen:
                raise NormError(f'--norm {nd.path} holds statistics of the {on.get("split")} split of '
                                f'{on.get("corpus")}, with speaker(s) {", ".join(seen[:8])} of the Test part of '
                                f'{corpus.name}{" " + corpus.fold if corpus.fold else ""} (its record says so, by the '
                                f'audio of their utterances): training with them would carry the test speakers into '
                                f'the model and into its later test; compute them on Train (python norm_para.py '
                                f'--split Train{" --fold " + corpus.fold[4:] if corpus.fold else ""})')
        elif on.get('corpus') == corpus.name and on.get('split') not in (None, 'Train'):
            raise NormError(f'--norm {nd.path} holds statistics of the {on["split"]} split of {corpus.name} (its '
                            f'record says so): training with them would carry that split into the model and into '
                            f'its later test; compute them on Train (python norm_para.py --split Train)')
        if on.get('corpus') not in (None, corpus.name) and not nd.release:
            print(f'note: --norm {nd.path} holds statistics of {on["corpus"]} ({on.get("split")}), not of '
                  f'{corpus.name}, the corpus trained on; the model record says so', file=sys.stderr)
    if nd is not None and fscope in ('published', 'train'):
        fnorm = _folder_norm(nd, fscope)
    elif fscope == 'published':
        if pub is None:
            raise NormError("--feature-norm published needs the authors' NormTerm: --init-from their release "
                            "folder, or --norm DIR/NormTerm")
        fnorm = FeatNorm(*pub, 'published', 'NormTerm of the release',
                         sha256=release.record['feature_norm'].get('sha256'), computed_on=RELEASE_COMPUTED_ON)
    else:
        fnorm = data_norm(fscope, store, corpus)
    if len(fnorm.mean) != store.dim:
        raise NormError(f'the {fnorm.describe()} feature statistics have {len(fnorm.mean)} dims, the feature store '
                        f'{store.path} has {store.dim}; pass the NormTerm of these features (norm_para.py)')
    if not emos:          # rankers: no labels
        return fnorm, {}, None
    if lscope == 'published':
        if nd is not None and nd.release:
            labels, lrec = {e: nd.get(e) for e in emos}, nd.record()
        elif release is not None and release.source == 'release':
            labels = {e: release.label_stats(e) for e in emos}
            lrec = {k: release.record['label_norm'][k] for k in ('scope', 'source', 'sha256')}
        else:
            raise NormError("--label-norm published needs the authors' NormTerm: --init-from their release folder "
                            "or --norm DIR/NormTerm")
    elif nd is not None and not nd.release:
        labels, lrec = {e: nd.get(e) for e in emos}, nd.record()
    else:
        labels = label_stats(corpus, 'Train', emos)
        lrec = {'scope': 'train', 'source': f'Train consensus of {corpus.name}', 'sha256': None,
                'computed_on': {'corpus': corpus.name, 'split': 'Train',
                                'speakers': identity.speakers_of(corpus, corpus.files('Train'))}}
    return fnorm, labels, {**lrec, 'stats': {e: list(v) for e, v in labels.items()}}


def model_feat_stats(ckpt, scope=None, norm_path=None):
    """Feature statistics to evaluate a Checkpoint with -> (scope, FeatNorm or None for speaker/corpus).

    Default scope: the one the model was trained with. A --norm folder replaces the stored statistics."""
    stored = (ckpt.record.get('feature_norm') or {})
    scope = scope or stored.get('scope') or 'train'
    if scope not in SCOPES:
        raise NormError(f'unknown --feature-norm {scope!r}; use one of {SCOPES}')
    nd = norm_dir(norm_path)
    if scope in ('speaker', 'corpus'):
        return scope, None
    if nd is not None:
        f = ckpt.features
        nd.check_features(f.get('preset'), f.get('hop'), f.get('dim'), f'the features of the model {ckpt.path.name}')
        return scope, _folder_norm(nd, scope)
    if stored.get('scope') != scope or stored.get('mean') is None:
        raise NormError(f'{ckpt.path} was trained with {stored.get("scope")!r} feature statistics, so it holds no '
                        f'{scope!r} ones (for the release, the statistics of its training corpus are the published '
                        f'ones); use --feature-norm {stored.get("scope")}, speaker or corpus, or pass --norm DIR')
    on = stored.get('computed_on') or (RELEASE_COMPUTED_ON if ckpt.source == 'release' else None)
    fn = FeatNorm(stored['mean'], stored['std'], scope, stored.get('source'), sha256=stored.get('sha256'),
                  computed_on=on)
    if ckpt.features.get('dim') and len(fn.mean) != ckpt.features['dim']:
        raise NormError(f'{ckpt.path}: its record holds {len(fn.mean)}-dim statistics for {ckpt.features["dim"]}-dim '
                        f'features; the record is damaged, retrain or pass --norm DIR')
    return scope, fn


def model_label_stats(ckpt, emo, norm_path=None):
    """(mean, std) mapping the model's outputs back to the rating scale, and a description."""
    if norm_path is not None:
        nd = norm_dir(norm_path)
        return nd.get(emo), nd.record()
    rec = ckpt.record.get('label_norm') or {}
    return ckpt.label_stats(emo), {k: rec.get(k) for k in ('scope', 'source', 'sha256', 'computed_on')}


def eval_norm(ckpt, scope, store, corpus, norm_path=None, names=None):
    """FeatNorm to evaluate a Checkpoint on a corpus's feature store (testing and ranking scripts)."""
    scope, fn = model_feat_stats(ckpt, scope, norm_path)
    if fn is None:
        fn = data_norm(scope, store, corpus, names)
    if len(fn.mean) != store.dim:
        raise NormError(f'{fn.describe()} statistics have {len(fn.mean)} dims, {store.path} has {store.dim}')
    return fn


def warn_little_audio(seconds, what, file=None):
    """Corpus/speaker statistics from under MIN_SECONDS of audio describe the recording, not the setup."""
    if seconds < MIN_SECONDS:
        msg = (f'warning: {what} normalisation statistics come from only {seconds:.1f} s of audio (< '
               f'{MIN_SECONDS:.0f} s): they are not meaningful; give more files or use the model\'s statistics')
        print(msg, file=file or sys.stderr)
        return msg
    return None
