"""Tiny MSP-Podcast-layout corpora for tests: real 16 kHz WAVs, transcripts, TextGrids, labels.

    root = make_tiny_corpus(tmp_path / 'c', n=24, detailed='emodetail')

Each utterance has a hidden arousal level (1..7) that drives both its loudness and its raters'
EmoAct scores, so models have something real to learn. With trend='rise' loudness grows over the
utterance (the most emotional chunks are at the end), 'fall' the reverse, None flat.
"""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

SR = 16000
WORDS = ['i', 'really', 'think', 'that', 'we', 'should', 'talk', 'about', 'this', 'tomorrow', 'because', 'the', 'show', 'was', 'great', 'and', 'people', 'loved', 'it', 'but', 'nobody', 'knew', 'what', 'happened', 'next', 'so', 'they', 'called', 'me', 'again']
CLASSES = {'A': 'Angry', 'H': 'Happy', 'S': 'Sad', 'N': 'Neutral', 'C': 'Contempt', 'U': 'Surprise'}
SECOND = ['', 'Frustrated, Annoyed', 'Concerned', 'Amused', '', 'Disappointed, Sad, Bored']


def synth_voice(dur, arousal=4.0, f0=160.0, trend='rise', sr=SR, seed=0):
    """Harmonic voiced buzz with syllable-like pulses and a loudness envelope (float32, mono)."""
    rng = np.random.default_rng(seed)
    n = max(int(round(dur * sr)), 1)
    t = np.arange(n) / sr
    u = t / max(dur, 1e-6)
    f = f0 * (1 + 0.06 * np.sin(2 * np.pi * 3.1 * t + rng.uniform(0, 6))) * (1 + 0.04 * (arousal - 4) / 3)
    phase = 2 * np.pi * np.cumsum(f) / sr
    k = np.arange(1, 11)[:, None]
    x = (np.sin(k * phase) / k).sum(0)
    syll = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)) ** 2
    shape = {'rise': 0.2 + 0.8 * u, 'fall': 1.0 - 0.8 * u}.get(trend, np.ones_like(u))
    level = 0.04 + 0.16 * (arousal - 1) / 6
    edge = np.clip(np.minimum(t, dur - t) / 0.05, 0, 1)   # 50 ms fades, no clicks
    y = level * shape * syll * edge * x / 2 + 1e-3 * rng.standard_normal(n)
    return np.clip(y, -1, 1).astype(np.float32)


def at_level(x, sr, dbfs):
    """Mono `x` scaled so that its active speech level (ITU-T P.56, audio.active_speech_level) is `dbfs`."""
    from audio import active_speech_level
    x = np.asarray(x, dtype=np.float64)
    return x * 10 ** ((dbfs - active_speech_level(x, sr)[0]) / 20)


def with_high_band(x, sr, db, rounds=6):
    """Mono `x` (sampled at >= 16 kHz) with its content above 4 kHz scaled so that audio.high_band_db reads
    `db` (within a few hundredths of a dB): the spectrum (one FFT of the whole signal) times a gain g above
    4 kHz, 1 below 3.6 kHz and log-linear between (a brick wall at 4 kHz would leak into the 4-8 kHz band of the
    32-ms frames and hold the reading near -30 dB for some voices)."""
    from audio import high_band_db
    x = np.asarray(x, dtype=np.float64)
    spec = np.fft.rfft(x)
    ramp = np.clip((np.fft.rfftfreq(len(x), 1 / sr) - 3600) / 400, 0, 1)
    g = 1.0
    for _ in range(rounds):
        y = np.fft.irfft(spec * g ** ramp, len(x))
        g *= 10 ** ((db - high_band_db(y, sr)) / 20)
    return np.fft.irfft(spec * g ** ramp, len(x))


def with_clip_share(x, share):
    """Mono `x` scaled and clipped at full scale so that round(share * len(x)) samples (at least one; ties
    aside) reach |x| >= 0.999 (audio.CLIP_LEVEL)."""
    x = np.asarray(x, dtype=np.float64)
    k = max(int(round(share * len(x))), 1)
    mag = np.sort(np.abs(x))[::-1]
    gain = 0.9995 / ((mag[k - 1] + mag[k]) / 2)          # the k loudest samples land above 0.999, the rest below
    return np.clip(x * gain, -1.0, 1.0)


def with_quiet_channel(x, db):
    """(frames, 2): `x` and a copy of it `db` dB quieter (audio.channel_levels_db of the second reads `db`)."""
    x = np.asarray(x, dtype=np.float64)
    return np.stack([x, x * 10 ** (db / 20)], axis=1)


def cut_wav(src, dst, missing_seconds):
    """A copy of the PCM WAV `src` with its last `missing_seconds` of data bytes removed (header unchanged)."""
    import soundfile as _sf
    info = _sf.info(str(src))
    b = Path(src).read_bytes()
    block = info.channels * {'PCM_16': 2, 'PCM_24': 3, 'PCM_32': 4, 'FLOAT': 4}[info.subtype]
    Path(dst).write_bytes(b[:len(b) - int(round(missing_seconds * info.samplerate)) * block])


def write_textgrid(path, intervals, xmax=None, short=False, extra_tier=True):
    """Write a Praat TextGrid (long or short text format) whose first tier holds `intervals`
    [(xmin, xmax, text)], plus an optional second 'phones' tier."""
    xmax = intervals[-1][1] if xmax is None and intervals else (xmax or 0.0)
    tiers = [('words', intervals)]
    if extra_tier:
        tiers.append(('phones', [(a, b, w.upper()[:2]) for a, b, w in intervals]))
    q = lambda s: '"' + str(s).replace('"', '""') + '"'
    if short:
        out = ['File type = "ooTextFile"', 'Object class = "TextGrid"', '', '0', f'{xmax}', '<exists>',
               str(len(tiers))]
        for name, iv in tiers:
            out += ['"IntervalTier"', q(name), '0', f'{xmax}', str(len(iv))]
            for a, b, w in iv:
                out += [f'{a}', f'{b}', q(w)]
    else:
        out = ['File type = "ooTextFile"', 'Object class = "TextGrid"', '', 'xmin = 0 ', f'xmax = {xmax} ',
               'tiers? <exists> ', f'size = {len(tiers)} ', 'item []: ']
        for i, (name, iv) in enumerate(tiers, 1):
            out += [f'    item [{i}]:', '        class = "IntervalTier" ', f'        name = {q(name)} ',
                    '        xmin = 0 ', f'        xmax = {xmax} ', f'        intervals: size = {len(iv)} ']
            for j, (a, b, w) in enumerate(iv, 1):
                out += [f'        intervals [{j}]:', f'            xmin = {a} ', f'            xmax = {b} ',
                        f'            text = {q(w)} ']
    Path(path).write_text('\n'.join(out) + '\n', encoding='utf-8')


def make_tiny_corpus(root, n=24, seed=0, detailed='emodetail', consensus_name='labels_consensus.csv',
                     audio_dir='Audios', labels_dir='Labels', split_names=('Train', 'Development', 'Test1'),
                     trend='rise', short=2, with_text=True):
    """Write an MSP-Podcast-layout corpus of `n` utterances under `root` and return its Path.

    detailed: 'emodetail' (v1.11 strings), 'json' (v1.6), 'csv' (long form, WorkerID column) or None.
    Splits get about 50/25/25 % of utterances (first split name gets the half), speaker-disjoint.
    `short` utterances are 0.5 s long, the rest 1.5-4 s. 3-6 raters per utterance, integers 1..7.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    adir, ldir = root / audio_dir, root / labels_dir
    for d in [adir, ldir] + ([root / 'Transcripts', root / 'ForceAligned'] if with_text else []):
        d.mkdir(parents=True, exist_ok=True)
    # splits: weights 2:1:1..., speakers disjoint across splits (2 per split, more for large n)
    w = np.array([2.0] + [1.0] * (len(split_names) - 1))
    counts = np.floor(n * w / w.sum()).astype(int)
    counts[0] += n - counts.sum()
    split = np.repeat(np.arange(len(split_names)), counts)
    n_spk = np.maximum(2, counts // 8)
    first = np.concatenate([[0], np.cumsum(n_spk)[:-1]])
    spk = np.array([first[s] + (i % n_spk[s]) for i, s in enumerate(split)]) + 1
    durs = rng.uniform(1.5, 4.0, n).round(2)
    durs[rng.choice(n, min(short, n), replace=False)] = 0.5
    arousal = rng.uniform(1.5, 6.5, n)
    valence, dom = rng.uniform(1.5, 6.5, n), np.clip(0.7 * arousal + 0.3 * rng.uniform(1, 7, n), 1, 7)
    workers = [f'WORKER{i:05d}' for i in range(1, 13)]
    cons, det = [], []
    for i in range(n):
        name = f'MSP-PODCAST_{1000 + spk[i]:04d}_{i + 1:04d}.wav'
        f0 = 120 + 100 * ((spk[i] * 37) % 11) / 10
        y = synth_voice(durs[i], arousal[i], f0, trend, seed=seed * 1000 + i)
        sf.write(adir / name, y, SR, subtype='PCM_16')
        k = int(rng.integers(3, 7))
        ws = rng.choice(len(workers), k, replace=False)
        r = {c: np.clip(np.rint(m + rng.normal(0, 0.8, k)), 1, 7).astype(int)
             for c, m in (('EmoAct', arousal[i]), ('EmoVal', valence[i]), ('EmoDom', dom[i]))}
        cls = 'A' if arousal[i] > 5 and valence[i] < 4 else 'H' if valence[i] > 5 else \
            'S' if arousal[i] < 3 else 'N'
        for j in range(k):
            det.append({'FileName': name, 'WorkerID': workers[ws[j]], 'EmoClass_Major': CLASSES[cls],
                        'EmoClass_Second': SECOND[(i + j) % len(SECOND)],
                        'EmoAct': int(r['EmoAct'][j]), 'EmoVal': int(r['EmoVal'][j]), 'EmoDom': int(r['EmoDom'][j])})
        cons.append({'FileName': name, 'EmoClass': cls,
                     **{c: round(float(r[c].mean()), 4) for c in ('EmoAct', 'EmoVal', 'EmoDom')},
                     'SpkrID': int(spk[i]), 'Gender': 'Female' if spk[i] % 2 else 'Male',
                     'Split_Set': split_names[split[i]]})
        if with_text:
            nw = max(1, int(durs[i] * 2.2))
            words = [WORDS[(i * 7 + j) % len(WORDS)] for j in range(nw)]
            (root / 'Transcripts' / (name[:-4] + '.txt')).write_text(' '.join(words).capitalize() + '.\n')
            a0, a1 = 0.1, durs[i] - 0.1
            edges = np.linspace(a0, a1, nw + 1).round(3)
            iv = [(0.0, a0, '')] + [(float(edges[j]), float(edges[j + 1]), words[j]) for j in range(nw)] + \
                 [(a1, float(durs[i]), '')]
            write_textgrid(root / 'ForceAligned' / (name[:-4] + '.TextGrid'), iv, xmax=float(durs[i]))
    pd.DataFrame(cons).to_csv(ldir / consensus_name, index=False)
    det = pd.DataFrame(det)
    if detailed == 'csv':
        det.to_csv(ldir / 'labels_detailed.csv', index=False)
    elif detailed == 'emodetail':
        s = (det.WorkerID + '; ' + det.EmoClass_Major + '; ' + det.EmoClass_Second + '; A:' +
             det.EmoAct.astype(float).astype(str) + '; V:' + det.EmoVal.astype(float).astype(str) +
             '; D:' + det.EmoDom.astype(float).astype(str) + ';')
        pd.DataFrame({'FileName': det.FileName, 'EmoDetail': s}).to_csv(ldir / 'labels_detailed.csv', index=False)
    elif detailed == 'json':
        out = {}
        for row in det.itertuples(index=False):
            out.setdefault(row.FileName, {})[row.WorkerID] = {
                'EmoClass_Major': row.EmoClass_Major, 'EmoClass_Second': row.EmoClass_Second,
                'EmoAct': str(row.EmoAct), 'EmoDom': str(row.EmoDom), 'EmoVal': str(row.EmoVal)}
        (ldir / 'labels_detailed.json').write_text(json.dumps(out, indent=1))
    elif detailed is not None:
        raise ValueError(f"detailed must be 'emodetail', 'json', 'csv' or None, not {detailed!r}")
    return root


if __name__ == '__main__':   # python tests/fixtures.py OUT_DIR  -> a corpus to look at
    import sys
    print(make_tiny_corpus(sys.argv[1] if len(sys.argv) > 1 else os.path.join('/tmp', 'tiny_corpus')))
