"""Input-warning bench: how often each input check of predict.py fires on clean corpora (false alarms) and
whether it fires on planted bad inputs (hits). Audio checks only, no model: fast.

    nice python bench/bench_warnings.py                  # Emo-DB, RAVDESS 01-04, demo corpus -> results/warnings.json
    python bench/bench_warnings.py --limit 20 --planted-per-corpus 3 --predict-check 0 --out /tmp/w   # smoke size

Each file goes through the same code as predict.py: audio.load_audio(path, notes=...) (clipping, active
speech level, band limit, silent channel, truncated WAV) and audio.speech_note on the openSMILE LLDs of the
model preset (no speech). Per corpus the JSON holds the count and rate of files flagged by each check and
the distribution (percentiles) of every measurement behind the checks (audio.measure), so each threshold
can be read against the data it was set from; the old whole-file RMS rule (< -50 dBFS) is counted beside
the active-speech-level rule it replaced.

Planted bad inputs (each must be flagged by its check):
  synthetic, made as in tests/test_provenance.py: digital silence, white noise (0.3 RMS), a 3-s voice with a
  dead second channel, the same WAV cut to half its bytes (truncated), the voice x 0.002 (very quiet), the
  voice x 30 clipped (clipped), the voice sampled at 8 kHz, the voice at 8 kHz upsampled to 16 kHz
  real, from --planted-per-corpus files of each corpus (evenly spaced): -50 dB gain (very quiet), driven
  20 dB past full scale (peak scaled to 10) and clipped, a zero second channel, half the bytes of a 16-bit copy, resampled to 8 kHz,
  resampled to 8 kHz and back to 16 kHz (telephone-band content at 16 kHz)
With --predict-check N, predict.py (the repository's own Act model) runs on N clean files per corpus and on
the synthetic planted files, and its `warning` column must equal the bench's findings file by file.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import soxr  # noqa: E402

REPO = common.REPO
KINDS = ['clipped', 'digital_silence', 'low_level', 'low_rate', 'band_limited', 'silent_channel', 'truncated',
         'no_speech']
PCTS = [0, 0.5, 1, 5, 25, 50, 75, 95, 99, 99.5, 100]
MEASURES = ['level_dbfs', 'rms_dbfs', 'activity', 'clip_share', 'high_band_db', 'quietest_channel_db',
            'voiced_seconds', 'seconds']


def corpus_files(name, root):
    root = Path(root)
    if name == 'demo':
        import demo_corpus
        root = demo_corpus.ensure_demo_corpus(root)
        return sorted((Path(root) / 'Audios').rglob('*.wav'))
    if name == 'emodb':
        return sorted((root / 'wav').glob('*.wav'))
    return sorted(root.glob('Actor_*/*.wav'))


class Checker:
    """The input checks of predict.py on one file: findings, their kinds and the measurements behind them."""

    def __init__(self):
        from features import LLDExtractor
        self.ext = LLDExtractor('published')

    def __call__(self, path):
        import audio
        notes = []
        sig = audio.load_audio(path, audio.SR, notes=notes)
        x, sr = sf.read(str(path), dtype='float32', always_2d=True)
        m = audio.measure(x, sr, path)
        try:
            lld = self.ext(sig)
        except Exception:   # too short for one frame: predict.py reports it as an error, not a warning
            lld = None
        voiced = None if lld is None else audio.voiced_seconds(lld, self.ext.feature_names, self.ext.hop)
        sn = None if lld is None else audio.speech_note(lld, self.ext.feature_names, self.ext.hop)
        notes = notes + ([sn] if sn else [])
        m = {k: m[k] for k in ('level_dbfs', 'rms_dbfs', 'activity', 'clip_share', 'high_band_db', 'file_sr',
                              'missing_seconds')}
        m['quietest_channel_db'] = float(min(audio.channel_levels_db(x))) if x.shape[1] > 1 else None
        m['voiced_seconds'], m['seconds'] = voiced, len(sig) / audio.SR
        kinds = sorted({audio.note_kind(n) for n in notes})
        return {'file': str(path), 'warning': '; '.join(notes), 'kinds': kinds, **m}


def percentiles(values):
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if not len(v):
        return None
    return {f'p{p:g}': round(float(np.percentile(v, p)), 4) for p in PCTS} | {'n': int(len(v))}


def summarise(rows):
    n = len(rows)
    flagged = {k: [r['file'] for r in rows if k in r['kinds']] for k in KINDS}
    any_flag = [r for r in rows if r['kinds']]
    return {'files': n,
            'flagged': {k: len(v) for k, v in flagged.items()},
            'rate': {k: round(len(v) / max(n, 1), 4) for k, v in flagged.items()},
            'any_warning': len(any_flag), 'any_warning_rate': round(len(any_flag) / max(n, 1), 4),
            'old_rms_rule_flagged': sum(1 for r in rows if r['rms_dbfs'] < -50.0),
            'old_rms_rule_rate': round(sum(1 for r in rows if r['rms_dbfs'] < -50.0) / max(n, 1), 4),
            'sample_rates': sorted({r['file_sr'] for r in rows}),
            'distributions': {k: percentiles([r[k] for r in rows]) for k in MEASURES},
            'flagged_files': {r['file']: r['warning'] for r in any_flag}}


# ------------------------------------------------------------------ planted bad inputs
def synth_voice(dur, arousal=4.0, f0=160.0, trend='rise', sr=16000, seed=0):
    from tests.fixtures import synth_voice as sv
    return sv(dur, arousal=arousal, f0=f0, trend=trend, sr=sr, seed=seed)


def truncate(src, dst):
    b = Path(src).read_bytes()
    Path(dst).write_bytes(b[:len(b) // 2])


def plant_synthetic(d):
    """[(path, expected kinds)] made as the tests make them."""
    d.mkdir(parents=True, exist_ok=True)
    v = synth_voice(3.0, arousal=5, seed=1)
    out = []
    sf.write(d / 'voice.wav', v, 16000)
    sf.write(d / 'silence.wav', np.zeros(32000, np.float32), 16000)
    out.append((d / 'silence.wav', ['no_speech', 'digital_silence']))
    sf.write(d / 'noise.wav', (0.3 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32), 16000)
    out.append((d / 'noise.wav', ['no_speech']))
    sf.write(d / 'dead_channel.wav', np.stack([v, np.zeros_like(v)], 1), 16000)
    out.append((d / 'dead_channel.wav', ['silent_channel']))
    truncate(d / 'voice.wav', d / 'cut.wav')
    out.append((d / 'cut.wav', ['truncated']))
    v2 = synth_voice(2.0, arousal=5, seed=2)
    sf.write(d / 'quiet.wav', v2 * 0.002, 16000, subtype='FLOAT')
    out.append((d / 'quiet.wav', ['low_level']))
    sf.write(d / 'loud.wav', np.clip(v2 * 30, -1, 1), 16000)
    out.append((d / 'loud.wav', ['clipped']))
    sf.write(d / 'voice_8k.wav', synth_voice(3.0, arousal=5, seed=1, sr=8000), 8000)
    out.append((d / 'voice_8k.wav', ['low_rate']))
    up = soxr.resample(soxr.resample(v, 16000, 8000, quality='HQ'), 8000, 16000, quality='HQ')
    sf.write(d / 'voice_8k_to_16k.wav', up.astype(np.float32), 16000)
    out.append((d / 'voice_8k_to_16k.wav', ['band_limited']))
    return out


def plant_real(d, files, tag):
    """[(path, expected kinds, kind of planting)] derived from clean corpus files."""
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(files):
        x, sr = sf.read(str(f), dtype='float32', always_2d=True)
        x = x.mean(axis=1)
        stem = f'{tag}_{i:02d}'
        sf.write(d / f'{stem}_quiet.wav', x * 10 ** (-50 / 20), sr, subtype='FLOAT')
        out.append((d / f'{stem}_quiet.wav', ['low_level'], 'quiet_-50dB'))
        sf.write(d / f'{stem}_clipped.wav', np.clip(x * (10 / np.abs(x).max()), -1, 1), sr)
        out.append((d / f'{stem}_clipped.wav', ['clipped'], 'clipped_peak_+20dB'))
        sf.write(d / f'{stem}_dead.wav', np.stack([x, np.zeros_like(x)], 1), sr)
        out.append((d / f'{stem}_dead.wav', ['silent_channel'], 'dead_channel'))
        sf.write(d / f'{stem}_full.wav', x, sr, subtype='PCM_16')
        truncate(d / f'{stem}_full.wav', d / f'{stem}_cut.wav')
        out.append((d / f'{stem}_cut.wav', ['truncated'], 'truncated'))
        x8 = soxr.resample(x, sr, 8000, quality='HQ')
        sf.write(d / f'{stem}_8k.wav', x8, 8000, subtype='PCM_16')
        out.append((d / f'{stem}_8k.wav', ['low_rate'], 'rate_8k'))
        sf.write(d / f'{stem}_8k_to_16k.wav', soxr.resample(x8, 8000, 16000, quality='HQ'), 16000, subtype='PCM_16')
        out.append((d / f'{stem}_8k_to_16k.wav', ['band_limited'], '8k_upsampled_16k'))
    return out


def spread(files, n):
    if n <= 0 or not files:
        return []
    idx = np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int)
    return [files[i] for i in sorted(set(idx))]


# ------------------------------------------------------------------ out of sample: choose on one part, test on the other
def speaker_of(corpus, path):
    """Speaker of a clean file: Emo-DB the first two characters, RAVDESS the last field, demo the second."""
    stem = Path(path).stem
    return {'emodb': stem[:2], 'ravdess': stem.split('-')[-1]}.get(corpus, stem.split('_')[1] if '_' in stem else stem)


def split_parts(rows_by):
    """Each clean row gets 'part': speakers sorted per corpus, alternately 'choose' (1st, 3rd, ...) and 'held_out'."""
    parts = {}
    for corpus, rows in rows_by.items():
        spk = sorted({speaker_of(corpus, r['file']) for r in rows})
        parts[corpus] = {'choose': spk[0::2], 'held_out': spk[1::2]}
        for r in rows:
            r['speaker'] = speaker_of(corpus, r['file'])
            r['part'] = 'choose' if r['speaker'] in parts[corpus]['choose'] else 'held_out'
    return parts


# threshold choice on the 'choose' part: halfway between the most extreme clean file and the least extreme planted
# file, in dB (clip share on a log scale), then to the next 5-dB step (clip share: 1, 2 or 5 x 10^k) away from the
# clean files: a false alarm misleads on every clean recording, an input between the planted ones and the threshold
# is still flagged if it is as degraded as they are. The other checks have no data-driven value: their planted
# inputs measure exactly zero / -inf (a zero channel, digital silence, white noise without voicing) or are
# structural (sample rate, WAV header), so their threshold is a design value that the held-out part and the
# near-threshold inputs test.
CHOSEN = {'low_level': ('level_dbfs', 'LOW_LEVEL_DBFS', 'low', 'db', ['quiet_-50dB']),
          'band_limited': ('high_band_db', 'BAND_LIMIT_DB', 'low', 'db', ['8k_upsampled_16k']),
          'clipped': ('clip_share', 'CLIP_SHARE', 'high', 'log', ['clipped_peak_+20dB'])}


def round_step(v, scale, side):
    """The grid step next to v (dB, or log10 of a share) on the flagged side: below for 'low', above for 'high'."""
    if scale == 'db':
        return float(5 * (np.floor(v / 5) if side == 'low' else np.ceil(v / 5)))
    grid = sorted(m * 10.0 ** k for k in range(-6, 1) for m in (1, 2, 5))
    return max(g for g in grid if np.log10(g) <= v + 1e-9) if side == 'low' else \
        min(g for g in grid if np.log10(g) >= v - 1e-9)


def choose_thresholds(clean, prow):
    """{check: threshold chosen by the rule above on the 'choose' part, with the values it came from}."""
    out = {}
    for check, (key, _attr, side, scale, kinds) in CHOSEN.items():
        c = [r[key] for r in clean if r['part'] == 'choose' and r[key] is not None]
        b = [r[key] for r in prow if r.get('part') == 'choose' and r['planted'] in kinds and r[key] is not None]
        if not c or not b:      # a run too small to have both on the choosing part
            out[check] = {'measurement': key, 'flagged_when': 'below' if side == 'low' else 'above',
                          'clean_extreme': None, 'planted_extreme': None, 'halfway': None, 'chosen': None}
            continue
        ce, be = (min(c), max(b)) if side == 'low' else (max(c), min(b))
        if scale == 'log':
            mid = (np.log10(max(ce, 1e-9)) + np.log10(be)) / 2
        else:
            mid = (ce + be) / 2
        out[check] = {'measurement': key, 'flagged_when': 'below' if side == 'low' else 'above',
                      'clean_extreme': ce, 'planted_extreme': be,
                      'halfway': float(10 ** mid if scale == 'log' else mid), 'chosen': round_step(mid, scale, side)}
    return out


def fires(check, r, t):
    """Would `check` fire on measured row r with threshold t (as audio.measure_notes decides)?"""
    import audio
    if check == 'low_level':
        return r['level_dbfs'] is not None and r['level_dbfs'] != float('-inf') and r['level_dbfs'] < t
    if check == 'band_limited':
        return (r['file_sr'] >= audio.SR and r['high_band_db'] is not None and r['high_band_db'] < t
                and r['level_dbfs'] >= audio.LOW_LEVEL_DBFS)
    return r['clip_share'] > t


def near_targets():
    """(check, offset label, target value, flagged?) around each threshold of audio.py: +-1 and +-2 dB (clip share:
    x 10^(+-0.1), 10^(+-0.2)), a second channel +-1 / +-2 dB around the silent-channel threshold, 5 / 8 / 12 / 20 ms
    missing around the 10-ms truncation tolerance."""
    import audio
    out = []
    for d in (-2, -1, 1, 2):
        out += [('low_level', f'{d:+d} dB', audio.LOW_LEVEL_DBFS + d, d < 0),
                ('band_limited', f'{d:+d} dB', audio.BAND_LIMIT_DB + d, d < 0),
                ('clipped', f'x10^{d / 10:+g}', audio.CLIP_SHARE * 10 ** (d / 10), d > 0),
                ('silent_channel', f'{d:+d} dB', audio.SILENT_CHANNEL_DB + d, d < 0)]
    out += [('truncated', f'{ms} ms missing', ms / 1000, ms > 10) for ms in (5, 8, 12, 20)]
    return out


def plant_near(d, files, tag):
    """[(path, check, offset, target, flagged?)]: held-out clean files moved to just inside / outside each threshold."""
    from tests.fixtures import at_level, cut_wav, with_clip_share, with_high_band, with_quiet_channel
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(files):
        x, sr = sf.read(str(f), dtype='float64', always_2d=True)
        x = x.mean(axis=1)
        for j, (check, off, target, flagged) in enumerate(near_targets()):
            p = d / f'{tag}_{i:02d}_{check}_{j}.wav'
            if check == 'low_level':
                sf.write(p, at_level(x, sr, target).astype(np.float32), sr, subtype='FLOAT')
            elif check == 'band_limited':
                if sr < 16000:
                    continue
                sf.write(p, with_high_band(x, sr, target).astype(np.float32), sr, subtype='FLOAT')
            elif check == 'clipped':
                sf.write(p, with_clip_share(x, target).astype(np.float32), sr, subtype='FLOAT')
            elif check == 'silent_channel':
                sf.write(p, with_quiet_channel(x, target).astype(np.float32), sr, subtype='FLOAT')
            else:
                full = d / f'{tag}_{i:02d}_full.wav'
                sf.write(full, x.astype(np.float32), sr, subtype='PCM_16')
                cut_wav(full, p, target)
            out.append((p, check, off, target, flagged))
    return out


def out_of_sample(clean, prow, near_rows, parts):
    """Thresholds chosen on the 'choose' part; false alarms and misses of the chosen and of audio.py's thresholds on
    the held-out part (its clean files, the planted inputs made from them, and the near-threshold inputs)."""
    import audio
    chosen = choose_thresholds(clean, prow)
    held = [r for r in clean if r['part'] == 'held_out']
    res = {'split': 'by speaker within each corpus: speakers sorted, alternately to the choosing part and the '
                     'held-out part; planted inputs belong to the part of the clean file they were made from; the '
                     'synthetic planted inputs and the near-threshold inputs (made from held-out files) are held out',
           'parts': parts, 'rule': 'halfway between the most extreme clean file and the least extreme planted file '
                                   'of the choosing part (dB; clip share on a log scale), then the next 5-dB step '
                                   '(clip share: 1, 2 or 5 x 10^k) away from the clean files; the other checks are '
                                   'design values (their planted inputs measure exactly zero or -inf, or they are '
                                   'structural)',
           'chosen': chosen, 'held_out': {}}
    for check, (_key, attr, _side, _scale, kinds) in CHOSEN.items():
        code = getattr(audio, attr)
        bad = [r for r in prow if r.get('part') == 'held_out' and r['planted'] in kinds]
        e = {'clean_files': len(held), 'planted_files': len(bad), 'code_threshold': code}
        for name, t in (('chosen', chosen[check]['chosen']), ('code', code)):
            if t is None:
                continue
            e[f'false_alarms_{name}'] = sum(fires(check, r, t) for r in held)
            e[f'misses_{name}'] = sum(not fires(check, r, t) for r in bad)
        e['chosen_equals_code'] = chosen[check]['chosen'] == code
        res['held_out'][check] = e
    for check in ('silent_channel', 'no_speech', 'truncated', 'low_rate'):
        kinds = {'silent_channel': ['dead_channel'], 'no_speech': [], 'truncated': ['truncated'],
                 'low_rate': ['rate_8k']}[check]
        bad = [r for r in prow if (r.get('part') == 'held_out' and r['planted'] in kinds)
               or (r['planted'].startswith('synthetic_') and check in r['expected'])]
        res['held_out'][check] = {'clean_files': len(held), 'planted_files': len(bad),
                                  'false_alarms_code': sum(check in r['kinds'] for r in held),
                                  'misses_code': sum(check not in r['kinds'] for r in bad)}
    near = {}
    for r in near_rows:
        n = near.setdefault(r['check'], {'files': 0, 'outside_flagged': 0, 'outside': 0, 'inside_flagged': 0,
                                         'inside': 0, 'by_offset': {}})
        n['files'] += 1
        side = 'outside' if r['should_flag'] else 'inside'
        n[side] += 1
        n[side + '_flagged'] += r['flagged']
        o = n['by_offset'].setdefault(r['offset'], {'files': 0, 'flagged': 0, 'measured': []})
        o['files'] += 1
        o['flagged'] += r['flagged']
        o['measured'].append(r['measured'])
    for n in near.values():
        n['misses'] = n['outside'] - n['outside_flagged']
        n['false_alarms'] = n['inside_flagged']
        for o in n['by_offset'].values():
            m = [v for v in o.pop('measured') if v is not None and np.isfinite(v)]
            o['measured_min'], o['measured_max'] = (round(min(m), 4), round(max(m), 4)) if m else (None, None)
    res['near_threshold'] = near
    tot = res['held_out'].values()
    res['held_out_false_alarms_code'] = sum(e['false_alarms_code'] for e in tot)
    res['held_out_misses_code'] = sum(e['misses_code'] for e in tot)
    res['held_out_clean_files'] = len(held)
    res['held_out_planted_files'] = sum(1 for r in prow if r.get('part') == 'held_out' or
                                        r['planted'].startswith('synthetic_'))
    res['near_misses'] = sum(n['misses'] for n in near.values())
    res['near_false_alarms'] = sum(n['false_alarms'] for n in near.values())
    res['near_files'] = sum(n['files'] for n in near.values())
    return res


NEAR_KEY = {'low_level': 'level_dbfs', 'band_limited': 'high_band_db', 'clipped': 'clip_share',
            'silent_channel': 'quietest_channel_db', 'truncated': 'missing_seconds'}


def predict_check(files, ckpt_args, tmp, expected):
    """Run predict.py on `files`; [(file, bench warning, predict warning)] plus the count that agree."""
    import pandas as pd

    import predict
    out = tmp / 'predict.csv'
    try:
        predict.main([*map(str, files), '-emo', 'Act', '--out', str(out), '--device', 'cpu', *ckpt_args])
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    df = pd.read_csv(out, keep_default_na=False)
    got = dict(zip(df['file'], df['warning']))
    rows = [{'file': str(f), 'bench': expected[str(f)], 'predict': got.get(str(f), '<missing>')} for f in files]
    return {'files': len(rows), 'agree': sum(r['bench'] == r['predict'] for r in rows),
            'disagreements': [r for r in rows if r['bench'] != r['predict']]}


# check -> (measurement, threshold attribute of audio, 'low' if values below the threshold are flagged,
#           planted kinds that must be flagged by it)
MARGINS = {'low_level': ('level_dbfs', 'LOW_LEVEL_DBFS', 'low', ['quiet_-50dB', 'synthetic_quiet']),
           'band_limited': ('high_band_db', 'BAND_LIMIT_DB', 'low', ['8k_upsampled_16k', 'synthetic_voice_8k_to_16k']),
           'clipped': ('clip_share', 'CLIP_SHARE', 'high', ['clipped_peak_+20dB', 'synthetic_loud']),
           'silent_channel': ('quietest_channel_db', 'SILENT_CHANNEL_DB', 'low', ['dead_channel',
                                                                                 'synthetic_dead_channel']),
           'no_speech': ('voiced_seconds', 'MIN_VOICED_SECONDS', 'low', ['synthetic_silence', 'synthetic_noise'])}


def margins(rows_by, prow):
    """Per check: the clean file closest to the threshold and the planted file closest to it."""
    import audio
    out = {}
    for check, (key, attr, side, kinds) in MARGINS.items():
        pick = min if side == 'low' else max
        clean = [(r[key], n, r['file']) for n, rows in rows_by.items() for r in rows if r[key] is not None]
        bad = [(r[key] if r[key] is not None else float('-inf'), r['planted'], r['file']) for r in prow
               if r['planted'] in kinds]
        c = pick(clean, key=lambda t: t[0]) if clean else None
        b = (max if side == 'low' else min)(bad, key=lambda t: t[0]) if bad else None
        out[check] = {'measurement': key, 'threshold': getattr(audio, attr), 'flagged_when': side,
                      'clean_closest': None if c is None else {'value': c[0], 'corpus': c[1],
                                                                'file': Path(c[2]).name},
                      'planted_closest': None if b is None else {'value': b[0], 'planted': b[1], 'file': b[2]}}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--emodb', default=str(REPO.parent / 'shared' / 'datasets' / 'emodb'),
                    help='Emo-DB folder holding wav/ (default ../shared/datasets/emodb; skipped when absent)')
    ap.add_argument('--ravdess', default=str(REPO.parent / 'shared' / 'datasets' / 'ravdess'),
                    help='RAVDESS folder holding Actor_*/ (default ../shared/datasets/ravdess; skipped when absent)')
    ap.add_argument('--corpus', default='data/demo_corpus',
                    help='demo corpus root (default data/demo_corpus, built when missing)')
    ap.add_argument('--limit', type=int, default=0, help='use only the first N files of each corpus (0 = all)')
    ap.add_argument('--planted-per-corpus', type=int, default=20,
                    help='clean files per corpus turned into each kind of planted bad input (default 20)')
    ap.add_argument('--near-per-corpus', type=int, default=3,
                    help='held-out clean files per corpus moved to just inside / just outside each threshold '
                         '(+-1 and +-2 dB etc.; default 3)')
    ap.add_argument('--predict-check', type=int, default=4,
                    help='clean files per corpus (plus the synthetic planted files) run through predict.py to '
                         'confirm its warning column equals the bench findings (default 4; 0 = skip)')
    ap.add_argument('--out', default=None, help='folder for warnings.json / warnings.md (default bench/results)')
    a = ap.parse_args(argv)
    if min(a.limit, a.planted_per_corpus, a.predict_check, a.near_per_corpus) < 0:
        ap.error('--limit, --planted-per-corpus, --near-per-corpus and --predict-check must be >= 0')
    import audio
    info = common.machine()
    print(common.machine_line(info))
    t0 = time.perf_counter()
    check = Checker()
    corpora, skipped, rows_by = {}, {}, {}
    for name, root in (('emodb', a.emodb), ('ravdess', a.ravdess), ('demo', a.corpus)):
        if name != 'demo' and not Path(root).is_dir():
            skipped[name] = f'{root} not found'
            print(f'{name}: {root} not found, skipped')
            continue
        files = corpus_files(name, root if name != 'demo' or Path(root).is_absolute() else REPO / root)
        if a.limit:
            files = files[:a.limit]
        t = time.perf_counter()
        rows = [check(f) for f in files]
        rows_by[name] = rows
        corpora[name] = summarise(rows) | {'root': os.path.relpath(Path(root).absolute(), REPO), 'seconds': round(time.perf_counter() - t, 1)}
        s = corpora[name]
        print(f'{name}: {s["files"]} files, any warning {s["any_warning"]} ({100 * s["any_warning_rate"]:.1f} %), '
              + ', '.join(f'{k} {v}' for k, v in s['flagged'].items() if v)
              + f'; old RMS rule {s["old_rms_rule_flagged"]}; level p1 {s["distributions"]["level_dbfs"]["p1"]} dBFS')

    with tempfile.TemporaryDirectory(prefix='bench_warnings_') as tmp:
        tmp = Path(tmp)
        planted = [(p, exp, 'synthetic_' + p.stem) for p, exp in plant_synthetic(tmp / 'synthetic')]
        parts = split_parts(rows_by)
        part_of = {}
        for name, rows in rows_by.items():
            src = spread([Path(r['file']) for r in rows], a.planted_per_corpus)
            made = plant_real(tmp / name, src, name)
            part = {str(f): r['part'] for r in rows for f in [Path(r['file'])]}
            for k, (p, _, _) in enumerate(made):
                part_of[p.name] = part[str(src[k // (len(made) // len(src))])]
            planted += made
        prow, by_plant = [], {}
        for p, exp, kind in planted:
            r = check(p)
            hit = all(e in r['kinds'] for e in exp)
            prow.append({**r, 'file': p.name, 'planted': kind, 'expected': exp, 'hit': hit,
                         'part': part_of.get(p.name, 'held_out')})
            b = by_plant.setdefault(kind if not kind.startswith('synthetic_') else 'synthetic', {'files': 0, 'hits': 0})
            b['files'] += 1
            b['hits'] += hit
        misses = [{'file': r['file'], 'expected': r['expected'], 'warning': r['warning']} for r in prow if not r['hit']]
        planted_res = {'files': len(prow), 'hits': sum(r['hit'] for r in prow), 'by_kind': by_plant,
                       'misses': misses,
                       'synthetic': [{k: r[k] for k in ('file', 'expected', 'warning', 'level_dbfs', 'high_band_db',
                                                        'clip_share', 'voiced_seconds')}
                                     for r in prow if r['planted'].startswith('synthetic_')],
                       'distributions': {kind: {k: percentiles([r[k] for r in prow if r['planted'] == kind])
                                                for k in ('level_dbfs', 'clip_share', 'high_band_db',
                                                          'quietest_channel_db')}
                                         for kind in sorted({r['planted'] for r in prow}
                                                            - {r['planted'] for r in prow
                                                               if r['planted'].startswith('synthetic_')})}}
        print(f'planted: {planted_res["hits"]}/{planted_res["files"]} flagged by their check'
              + ''.join(f'\n  MISSED {m["file"]}: expected {m["expected"]}, got "{m["warning"]}"' for m in misses))

        margin = margins(rows_by, prow)
        near_rows = []
        for name, rows in rows_by.items():
            src = spread([Path(r['file']) for r in rows if r['part'] == 'held_out'], a.near_per_corpus)
            for p, chk, off, target, should in plant_near(tmp / f'near_{name}', src, name):
                r = check(p)
                val = r[NEAR_KEY[chk]]
                near_rows.append({'file': p.name, 'corpus': name, 'check': chk, 'offset': off, 'target': target,
                                  'measured': val, 'should_flag': should, 'flagged': chk in r['kinds']})
        oos = out_of_sample([r for rows in rows_by.values() for r in rows], prow, near_rows, parts)
        print(f'out of sample (held-out speakers): {oos["held_out_false_alarms_code"]} false alarms on '
              f'{oos["held_out_clean_files"]} clean files, {oos["held_out_misses_code"]} misses of '
              f'{oos["held_out_planted_files"]} planted; near-threshold: {oos["near_misses"]} misses, '
              f'{oos["near_false_alarms"]} false alarms of {oos["near_files"]}; chosen '
              + ', '.join(f'{k} {v["chosen"]}' for k, v in oos['chosen'].items()))
        pc = None
        if a.predict_check:
            files = [Path(r['file']) for rows in rows_by.values() for r in spread(rows, a.predict_check)]
            files += [p for p, _, kind in planted if kind.startswith('synthetic_')]
            expected = {r['file']: r['warning'] for rows in rows_by.values() for r in rows}
            expected.update({str(p): check(p)['warning'] for p, _, kind in planted if kind.startswith('synthetic_')})
            pc = predict_check(files, [], tmp, expected)
            print(f'predict.py warning column equals the bench findings on {pc["agree"]}/{pc["files"]} files')

    thresholds = {'clip': f'share of |x| >= {audio.CLIP_LEVEL} above {audio.CLIP_SHARE}',
                  'low_level': f'active speech level (P.56: time constant {audio.P56_TIME_CONSTANT} s, hangover '
                               f'{audio.P56_HANGOVER} s, margin {audio.P56_MARGIN_DB} dB) below '
                               f'{audio.LOW_LEVEL_DBFS} dBFS',
                  'low_rate': f'file sample rate below {audio.SR} Hz',
                  'band_limited': f'power 4-8 kHz vs 0.3-4 kHz below {audio.BAND_LIMIT_DB} dB (files >= 16 kHz)',
                  'silent_channel': f'a channel {-audio.SILENT_CHANNEL_DB:g} dB below the loudest',
                  'truncated': 'WAV data chunk > 0.01 s shorter than its header claims',
                  'no_speech': f'< {audio.MIN_VOICED_SECONDS} s of frames with openSMILE voicing > '
                               f'{audio.VOICING_THRESHOLD}'}
    worst = max(((n, k, s['rate'][k]) for n, s in corpora.items() for k in KINDS), key=lambda t: t[2],
                default=(None, None, 0.0))
    res = {'machine': info, 'argv': sys.argv[1:] if argv is None else list(argv), 'thresholds': thresholds,
           'corpora': corpora, 'skipped': skipped, 'planted': planted_res, 'predict_check': pc,
           'margins': margin, 'out_of_sample': oos,
           'max_false_alarm_rate': {'corpus': worst[0], 'check': worst[1], 'rate': worst[2]},
           'target_met': bool(worst[2] <= 0.01 and planted_res['hits'] == planted_res['files']
                              and (pc is None or pc['agree'] == pc['files'])),
           'out_of_sample_target_met': bool(oos['held_out_false_alarms_code'] == 0 and oos['held_out_misses_code'] == 0
                                            and oos['near_misses'] == 0 and oos['near_false_alarms'] == 0
                                            and all(e['chosen_equals_code'] for k, e in oos['held_out'].items()
                                                    if k in CHOSEN)),
           'seconds': round(time.perf_counter() - t0, 1)}
    common.save_results('warnings', finite(res), a.out)
    md = write_md(res, a.out)
    print(f'wrote {md}')
    print(f'RESULT warnings: highest false-alarm rate {100 * worst[2]:.2f} %'
          + (f' ({worst[1]} on {worst[0]})' if worst[2] > 0 else '') + '; planted '
          f'{planted_res["hits"]}/{planted_res["files"]} flagged; target met: {res["target_met"]}')
    return res


def finite(x):
    """A copy with inf / nan floats as the strings '-inf', 'inf', 'nan' (strict JSON has no such numbers)."""
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    return x


def write_md(res, out_dir=None):
    from utils import atomic_write_text
    L = ['# Input warnings: false alarms on clean corpora, hits on planted bad inputs (`bench_warnings`)', '',
         f'Command: `{" ".join(["python bench/bench_warnings.py", *res["argv"]])}`  ',
         f'{common.machine_line(res["machine"])}; wall time {res["seconds"]} s.', '',
         '| check | threshold |', '|---|---|']
    L += [f'| {k} | {v} |' for k, v in res['thresholds'].items()]
    L += ['', '| corpus | files | ' + ' | '.join(KINDS) + ' | any | old RMS < -50 dBFS rule |',
          '|---|---|' + '---|' * (len(KINDS) + 2)]
    for n, s in res['corpora'].items():
        L.append(f'| {n} | {s["files"]} | ' + ' | '.join(f'{s["flagged"][k]} ({100 * s["rate"][k]:.1f} %)' for k in KINDS)
                 + f' | {s["any_warning"]} ({100 * s["any_warning_rate"]:.1f} %) | '
                 f'{s["old_rms_rule_flagged"]} ({100 * s["old_rms_rule_rate"]:.1f} %) |')
    L += ['', 'Distributions on the clean corpora (percentiles p0 / p1 / p5 / p50 / p95 / p99 / p100):', '',
          '| corpus | measurement | p0 | p1 | p5 | p50 | p95 | p99 | p100 |', '|---|---|---|---|---|---|---|---|---|']
    for n, s in res['corpora'].items():
        for k, d in s['distributions'].items():
            if d:
                L.append(f'| {n} | {k} | ' + ' | '.join(f'{d[p]:.4g}' for p in ('p0', 'p1', 'p5', 'p50', 'p95', 'p99',
                                                                                 'p100')) + ' |')
    L += ['', 'Each threshold against the data (the clean file and the planted file closest to it):', '',
          '| check | measurement | flagged when | threshold | closest clean file | closest planted file |',
          '|---|---|---|---|---|---|']
    for k, m in res['margins'].items():
        c, b = m['clean_closest'], m['planted_closest']
        L.append(f'| {k} | {m["measurement"]} | {"below" if m["flagged_when"] == "low" else "above"} | '
                 f'{m["threshold"]:g} | ' + (f'{c["value"]:.4g} ({c["corpus"]}, {c["file"]})' if c else '–')
                 + ' | ' + (f'{b["value"]:.4g} ({b["planted"]})' if b else '–') + ' |')
    p = res['planted']
    L += ['', f'Planted bad inputs: **{p["hits"]} / {p["files"]}** flagged by their check.', '',
          '| planted | files | flagged |', '|---|---|---|']
    L += [f'| {k} | {v["files"]} | {v["hits"]} |' for k, v in p['by_kind'].items()]
    L += ['', '| planted (real files) | measurement | p0 | p50 | p100 |', '|---|---|---|---|---|']
    for kind, ds in p['distributions'].items():
        for k, d in ds.items():
            if d:
                L.append(f'| {kind} | {k} | {d["p0"]:.4g} | {d["p50"]:.4g} | {d["p100"]:.4g} |')
    if p['misses']:
        L += ['', 'Missed: ' + '; '.join(f'{m["file"]} ({m["expected"]})' for m in p['misses'])]
    if res['predict_check']:
        pc = res['predict_check']
        L += ['', f'predict.py (own Act model) `warning` column equal to the bench findings on **{pc["agree"]} / '
                  f'{pc["files"]}** files.']
    o = res['out_of_sample']
    L += ['', '## Out of sample', '', f'Split: {o["split"]}. Speakers: '
          + '; '.join(f'{c} choose {", ".join(p["choose"])} / held out {", ".join(p["held_out"])}'
                      for c, p in o['parts'].items()) + '.', '', f'Rule: {o["rule"]}.', '',
          '| check | clean extreme (choosing part) | planted extreme (choosing part) | halfway | chosen | in audio.py |',
          '|---|---|---|---|---|---|']
    for k, c in o['chosen'].items():
        if c['chosen'] is not None:
            L.append(f'| {k} | {c["clean_extreme"]:.4g} | {c["planted_extreme"]:.4g} | {c["halfway"]:.4g} | '
                     f'{c["chosen"]:g} | {o["held_out"][k]["code_threshold"]:g} |')
    L += ['', '| check (held-out part) | clean files | false alarms | planted files | misses |', '|---|---|---|---|---|']
    L += [f'| {k} | {e["clean_files"]} | {e["false_alarms_code"]} | {e["planted_files"]} | {e["misses_code"]} |'
          for k, e in o['held_out'].items()]
    L += ['', 'Near-threshold inputs (held-out files moved just inside / just outside the thresholds of audio.py):', '',
          '| check | offset | files | flagged | measured (min - max) |', '|---|---|---|---|---|']
    for k, n in o['near_threshold'].items():
        for off, b in n['by_offset'].items():
            L.append(f'| {k} | {off} | {b["files"]} | {b["flagged"]} | {b["measured_min"]} - {b["measured_max"]} |')
    L += ['', f'Held out: **{o["held_out_false_alarms_code"]}** false alarms on {o["held_out_clean_files"]} clean '
              f'files, **{o["held_out_misses_code"]}** misses; near-threshold: **{o["near_misses"]}** misses and '
              f'**{o["near_false_alarms"]}** false alarms on {o["near_files"]} files. Out-of-sample target (no error, '
              f'chosen = audio.py) met: **{res["out_of_sample_target_met"]}**.']
    w = res['max_false_alarm_rate']
    worst = (f'{100 * w["rate"]:.2f} % ({w["check"]} on {w["corpus"]})' if w['rate'] > 0 else
             '0 % (no check fired on any clean file)')
    L += ['', f'Highest false-alarm rate of one check on one corpus: {worst}. Target (<= 1 % per check and corpus, '
              f'every planted input flagged) met: **{res["target_met"]}**.', '']
    path = Path(out_dir or common.RESULTS) / 'warnings.md'
    atomic_write_text(path, '\n'.join(L))
    return path


if __name__ == '__main__':
    main()
