"""Audio input: read any file soundfile understands, mix the active channels to mono, resample to 16 kHz,
and the input checks that flag recordings whose predictions cannot be trusted.

Checks (`load_audio(..., notes=[])` appends one line per finding; docs/pretrained.md, "Input checks"; every
threshold is set from the measurements of bench/bench_warnings.py, bench/results/warnings.md):
  silent channel  a channel more than 60 dB below the loudest one (or digitally silent) is left out of
                  the mix-down instead of halving the level of the others
  cut short       a WAV whose data chunk is shorter than its header says (a truncated copy)
  clipped         more than 0.1 % of the samples at full scale (|x| >= 0.999)
  very low level  active speech level below -60 dBFS: the level of the speech only, after ITU-T P.56
                  (`active_speech_level`), so the silences before and after a sentence do not count
  band-limited    a file sampled below 16 kHz, or (at 16 kHz or more) less than -40 dB of power in
                  4-8 kHz relative to 0.3-4 kHz: telephone / 8 kHz audio upsampled (`high_band_db`)
  no speech       fewer than 0.25 s of voiced frames (openSMILE voicing probability > 0.5): digital
                  silence, noise or music give predictions that mean nothing (`speech_note`, on LLDs)
"""
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy.ndimage import maximum_filter1d
from scipy.signal import lfilter

from errors import ToolkitError

SR = 16000
SILENT_CHANNEL_DB = -60.0
CLIP_LEVEL, CLIP_SHARE = 0.999, 0.001
# thresholds checked by bench/bench_warnings.py (bench/results/warnings.md): clean Emo-DB, RAVDESS and demo files
# measure -49.6 to -10.6 dBFS active speech level and -28.4 dB or more above 4 kHz; planted bad inputs
# (-50 dB gain, 8 kHz audio upsampled) measure -63.8 dBFS or less and -51.6 dB or less. Chosen on half of the
# speakers by the bench's rule, the level and band limit come out at these values (clipping at 0.5 %; 0.1 % is
# kept, stricter); on the other half no false alarm and no miss (out_of_sample in the JSON)
LOW_LEVEL_DBFS = -60.0                 # active speech level (P.56), not the RMS over the whole file
P56_TIME_CONSTANT, P56_HANGOVER, P56_MARGIN_DB = 0.03, 0.2, 15.9
BAND_EDGE_HZ = (4000, 8000)
BAND_LIMIT_DB = -40.0                  # power 4-8 kHz relative to 0.3-4 kHz
VOICING_THRESHOLD, MIN_VOICED_SECONDS = 0.5, 0.25


# every finding starts with one of these (bench/bench_warnings.py counts them per check)
NOTE_KINDS = {'clipped': 'clipped audio', 'digital_silence': 'digital silence', 'low_level': 'very low level',
              'low_rate': 'band-limited audio: sampled at', 'band_limited': 'band-limited audio:',
              'silent_channel': 'silent channel', 'truncated': 'file shorter than its header', 'no_speech': 'no speech'}


class AudioError(ToolkitError):
    """An audio file that cannot be used; the message names the file and what to do."""


def _db(x):
    return 20 * np.log10(max(float(x), 1e-12))


def wav_claimed_seconds(path):
    """(seconds the RIFF header's data chunk claims, seconds present) for a PCM WAV, else None."""
    try:
        with open(path, 'rb') as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b'RIFF' or head[8:12] != b'WAVE':
                return None
            size, block, rate = Path(path).stat().st_size, None, None
            while True:
                hdr = f.read(8)
                if len(hdr) < 8:
                    return None
                cid, n = hdr[:4], struct.unpack('<I', hdr[4:])[0]
                if cid == b'fmt ':
                    fmt = f.read(n + (n & 1))
                    rate, block = struct.unpack('<I', fmt[4:8])[0], struct.unpack('<H', fmt[12:14])[0]
                elif cid == b'data':
                    if not block or n in (0, 0xFFFFFFFF):
                        return None
                    return n / block / rate, (size - f.tell()) // block / rate
                else:
                    f.seek(n + (n & 1), 1)
    except (OSError, struct.error):
        return None


def channel_levels_db(x):
    """Level of each channel of a (frames, channels) signal relative to the loudest one (dB; -inf: silent)."""
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=0))
    loud = rms.max()
    if loud <= 0:
        return np.zeros(x.shape[1])
    with np.errstate(divide='ignore'):
        return 20 * np.log10(rms / loud)


def mix_active(x, path, notes):
    """(frames, channels) -> mono: the mean of the channels that carry signal."""
    if x.shape[1] == 1:
        return x[:, 0]
    rel = channel_levels_db(x)
    active = [c for c in range(x.shape[1]) if rel[c] > SILENT_CHANNEL_DB]
    if active and len(active) < x.shape[1]:
        dead = [c + 1 for c in range(x.shape[1]) if c not in active]
        notes.append(f'silent channel {", ".join(map(str, dead))} of {x.shape[1]}: used channel '
                     f'{", ".join(str(c + 1) for c in active)} only')
        return x[:, active].mean(axis=1)
    return x.mean(axis=1)


def active_speech_level(x, sr):
    """(active speech level in dBFS, activity factor) of a mono signal, after ITU-T P.56 method B.

    The envelope is |x| smoothed twice by a one-pole filter (time constant 0.03 s). A sample is active at a
    threshold c when the envelope reached c within the last 0.2 s (the hangover). For every threshold c
    (0.1 dB steps) the active level is A(c) = 10 log10(energy / active samples); the measured level is A where
    A(c) - c falls to the 15.9 dB margin (interpolated), scanning c upward. A full-scale sine reads -3 dBFS.
    Digital silence gives (-inf, 0.0). Vectorised: |x| is averaged over 1 ms blocks first (the envelope
    varies far slower), then two IIR filters, a running maximum and a histogram at 1 kHz.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    energy = float(np.dot(x, x))
    if energy <= 0:
        return float('-inf'), 0.0
    blk = max(int(sr) // 1000, 1)
    n = -(-len(x) // blk)
    mag = np.abs(x)
    if len(mag) < n * blk:   # pad the last block with its own mean
        mag = np.concatenate([mag, np.full(n * blk - len(mag), mag[(n - 1) * blk:].mean())])
    mag = mag.reshape(n, blk).mean(axis=1)
    rate = sr / blk
    g = np.exp(-1.0 / (P56_TIME_CONSTANT * rate))
    env = lfilter([1 - g], [1, -g], lfilter([1 - g], [1, -g], mag))
    hang = int(round(P56_HANGOVER * rate))
    held = maximum_filter1d(env, size=hang + 1, origin=hang // 2, mode='constant')   # max over [i - hang, i]
    lo, step = -150.0, 0.1
    idx = np.floor((20 * np.log10(np.maximum(held, 1e-300)) - lo) / step)
    counts = np.bincount(np.clip(idx, 0, None).astype(np.int64))
    above = np.cumsum(counts[::-1])[::-1] * float(blk)  # samples whose held envelope >= each threshold
    c = lo + step * np.arange(len(above))
    a_db = 10 * np.log10(energy / above)
    d = a_db - c
    hit = d <= P56_MARGIN_DB
    k = int(np.argmax(hit)) if hit.any() else len(d) - 1
    if k == 0 or not hit[k]:
        return float(a_db[k]), float(min(above[k] / len(x), 1.0))
    f = (d[k - 1] - P56_MARGIN_DB) / (d[k - 1] - d[k])
    level = a_db[k - 1] + f * (a_db[k] - a_db[k - 1])
    return float(level), float(min(energy / 10 ** (level / 10) / len(x), 1.0))


def high_band_db(x, sr, max_frames=2000):
    """Power in 4-8 kHz relative to the power in 0.3-4 kHz (dB) of a mono signal sampled at >= 16 kHz.

    Speech recorded at 16 kHz or more keeps fricatives and breath above 4 kHz; telephone audio (8 kHz)
    upsampled to 16 kHz has almost nothing there. Mean power spectrum of Hann-windowed 32 ms frames (at most
    `max_frames`, spread evenly over the file). None for signals under 32 ms or sampled below 16 kHz.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    seg = int(round(0.032 * sr))
    if len(x) < seg or sr < 2 * BAND_EDGE_HZ[1]:
        return None
    starts = np.arange(0, len(x) - seg + 1, seg)
    if len(starts) > max_frames:
        starts = starts[np.linspace(0, len(starts) - 1, max_frames).round().astype(int)]
    frames = x[starts[:, None] + np.arange(seg)] * np.hanning(seg)
    pxx = np.square(np.abs(np.fft.rfft(frames, axis=1))).sum(axis=0)
    f = np.fft.rfftfreq(seg, 1 / sr)
    low = pxx[(f >= 300) & (f < BAND_EDGE_HZ[0])].sum()
    high = pxx[(f >= BAND_EDGE_HZ[0]) & (f <= BAND_EDGE_HZ[1])].sum()
    if low <= 0:
        return None
    return float(10 * np.log10(max(high, 1e-30) / low))


def measure(x, file_sr, path=None):
    """All audio measurements behind the input checks of a raw (frames, channels) signal (a dict).

    clip_share       share of samples with |x| >= CLIP_LEVEL
    rms_dbfs         whole-file RMS level of the mono mix (silence included; for reference only)
    level_dbfs       active speech level of the mono mix (`active_speech_level`, silences excluded)
    activity         share of the file that is active speech at that level
    channel_db       level of each channel relative to the loudest (one value per channel)
    file_sr          sample rate of the file
    high_band_db     `high_band_db` of the mono mix (None below 16 kHz or for very short files)
    missing_seconds  seconds a WAV's data chunk is shorter than its header claims (0 if complete or not a WAV)
    """
    x = np.asarray(x, dtype=np.float32)
    mono = mix_active(x, path, [])
    level, activity = active_speech_level(mono, file_sr)
    claim = wav_claimed_seconds(path) if path is not None else None
    return {'clip_share': float(np.mean(np.abs(x) >= CLIP_LEVEL)),
            'rms_dbfs': float(_db(np.sqrt(np.mean(np.square(mono, dtype=np.float64))))),
            'level_dbfs': level, 'activity': activity,
            'channel_db': [float(v) for v in channel_levels_db(x)], 'file_sr': int(file_sr),
            'high_band_db': high_band_db(mono, file_sr),
            'missing_seconds': max(claim[0] - claim[1], 0.0) if claim else 0.0,
            'present_seconds': claim[1] if claim else x.shape[0] / file_sr}


def measure_notes(m):
    """The input-check findings (list of str) of a `measure` dict; the silent-channel note comes from
    `mix_active`. Each threshold is set from bench/bench_warnings.py (bench/results/warnings.md)."""
    notes = []
    if m['clip_share'] > CLIP_SHARE:
        notes.append(f'clipped audio: {100 * m["clip_share"]:.2f} % of the samples at full scale')
    if m['level_dbfs'] == float('-inf'):
        notes.append('digital silence (all samples zero)')
    elif m['level_dbfs'] < LOW_LEVEL_DBFS:
        notes.append(f'very low level: active speech at {m["level_dbfs"]:.0f} dBFS (ITU-T P.56; below '
                     f'{LOW_LEVEL_DBFS:.0f} dBFS; clean recordings measure about -50 to -10 dBFS)')
    if m['file_sr'] < SR:
        notes.append(f'band-limited audio: sampled at {m["file_sr"]} Hz, nothing above '
                     f'{m["file_sr"] / 2000:g} kHz (the models expect 16 kHz audio; predictions may shift)')
    elif m['high_band_db'] is not None and m['high_band_db'] < BAND_LIMIT_DB and m['level_dbfs'] >= LOW_LEVEL_DBFS:
        notes.append(f'band-limited audio: {m["high_band_db"]:.0f} dB of energy above 4 kHz (below '
                     f'{BAND_LIMIT_DB:.0f} dB: telephone or 8 kHz audio upsampled? predictions may shift)')
    if m['missing_seconds'] > 0.01:
        total = m['present_seconds'] + m['missing_seconds']
        notes.append(f'file shorter than its header claims: {m["present_seconds"]:.2f} s of {total:.2f} s '
                     f'present (truncated copy?)')
    return notes


def load_audio(path, sr=SR, min_seconds=0.0, notes=None):
    """Return a float32 mono signal at `sr` Hz (the mean of the active channels).

    Raises AudioError with the file name and a remedy for missing, unreadable, empty or too-short files.
    With a list `notes`, the input checks of the module docstring append their findings to it.
    """
    path = Path(path)
    checks, notes = notes is not None, [] if notes is None else notes
    if not path.exists():
        raise AudioError(f"{path}: file does not exist (check the corpus root and the FileName column)")
    try:
        x, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError on bad headers
        raise AudioError(f"{path}: unreadable audio ({e}); re-export it as 16-bit PCM WAV "
                         f"or remove it from the label file") from None
    if x.size == 0:
        raise AudioError(f"{path}: the file holds no samples; remove it from the label file")
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{path}: audio contains NaN or Inf samples; re-export the file")
    if checks:
        notes.extend(measure_notes(measure(x, file_sr, path)))
    x = mix_active(x, path, notes)
    if file_sr != sr:
        x = soxr.resample(x, file_sr, sr, quality="HQ").astype(np.float32)
    if len(x) < min_seconds * sr:
        raise AudioError(f"{path}: only {len(x) / sr:.2f} s of audio, at least {min_seconds} s needed")
    return np.ascontiguousarray(x, dtype=np.float32)


def voiced_seconds(lld, columns, hop):
    """Seconds of voiced frames (openSMILE voicing probability > VOICING_THRESHOLD) in LLDs; None without
    a voicing column."""
    name = next((c for c in columns if c.startswith('voicingFinalUnclipped')), None)
    if name is None:
        return None
    return float(np.sum(np.nan_to_num(np.asarray(lld)[:, list(columns).index(name)]) > VOICING_THRESHOLD)) * hop


def speech_note(lld, columns, hop):
    """'no speech found ...' when the LLDs hold fewer than MIN_VOICED_SECONDS of voiced frames, else None."""
    voiced = voiced_seconds(lld, columns, hop)
    if voiced is not None and voiced < MIN_VOICED_SECONDS:
        return (f'no speech found: {voiced:.2f} s of voiced frames (< {MIN_VOICED_SECONDS} s); the values '
                f'describe silence or noise, not an emotion')
    return None


def note_kind(note):
    """The check a finding comes from (a key of NOTE_KINDS), or None for text no check writes."""
    return next((k for k, prefix in NOTE_KINDS.items() if note.startswith(prefix)), None)
