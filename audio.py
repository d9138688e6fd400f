"""Audio input: read any file soundfile understands, mix the active channels to mono, resample to 16 kHz,
and the input checks that flag recordings whose predictions cannot be trusted.

Checks (`load_audio(..., notes=[])` appends one line per finding; docs/features.md, "LLDs"):
  silent channel  a channel more than 60 dB below the loudest one (or digitally silent) is left out of
                  the mix-down instead of halving the level of the others
  cut short       a WAV whose data chunk is shorter than its header says (a truncated copy)
  clipped         more than 0.1 % of the samples at full scale (|x| >= 0.999)
  very low level  RMS level below -50 dBFS (speech is usually recorded between -35 and -15 dBFS)
  no speech       fewer than 0.25 s of voiced frames (openSMILE voicing probability > 0.5): digital
                  silence, noise or music give predictions that mean nothing (`speech_note`, on LLDs)
"""
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from errors import ToolkitError

SR = 16000
SILENT_CHANNEL_DB = -60.0
CLIP_LEVEL, CLIP_SHARE = 0.999, 0.001
LOW_LEVEL_DBFS = -50.0
VOICING_THRESHOLD, MIN_VOICED_SECONDS = 0.5, 0.25


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


def mix_active(x, path, notes):
    """(frames, channels) -> mono: the mean of the channels that carry signal."""
    if x.shape[1] == 1:
        return x[:, 0]
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=0))
    loud = rms.max()
    active = [c for c in range(x.shape[1]) if loud > 0 and _db(rms[c] / loud) > SILENT_CHANNEL_DB]
    if active and len(active) < x.shape[1]:
        dead = [c + 1 for c in range(x.shape[1]) if c not in active]
        notes.append(f'silent channel {", ".join(map(str, dead))} of {x.shape[1]}: used channel '
                     f'{", ".join(str(c + 1) for c in active)} only')
        return x[:, active].mean(axis=1)
    return x.mean(axis=1)


def level_notes(x, file_sr, path, notes):
    """Clipping, very low level and truncated-data findings of a raw (frames, channels) signal."""
    clipped = float(np.mean(np.abs(x) >= CLIP_LEVEL))
    if clipped > CLIP_SHARE:
        notes.append(f'clipped audio: {100 * clipped:.2f} % of the samples at full scale')
    level = _db(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    if level < LOW_LEVEL_DBFS:
        notes.append('digital silence (all samples zero)' if level < -200 else
                     f'very low level: {level:.0f} dBFS RMS (speech is usually above -35 dBFS)')
    claim = wav_claimed_seconds(path)
    if claim and claim[0] - claim[1] > 0.01:
        notes.append(f'file shorter than its header claims: {claim[1]:.2f} s of {claim[0]:.2f} s present '
                     f'(truncated copy?)')


def load_audio(path, sr=SR, min_seconds=0.0, notes=None):
    """Return a float32 mono signal at `sr` Hz (the mean of the active channels).

    Raises AudioError with the file name and a remedy for missing, unreadable, empty or too-short files.
    With a list `notes`, the input checks of the module docstring append their findings to it.
    """
    path = Path(path)
    notes = [] if notes is None else notes
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
    level_notes(x, file_sr, path, notes)
    x = mix_active(x, path, notes)
    if file_sr != sr:
        x = soxr.resample(x, file_sr, sr, quality="HQ").astype(np.float32)
    if len(x) < min_seconds * sr:
        raise AudioError(f"{path}: only {len(x) / sr:.2f} s of audio, at least {min_seconds} s needed")
    return np.ascontiguousarray(x, dtype=np.float32)


def speech_note(lld, columns, hop):
    """'no speech found ...' when the LLDs hold fewer than MIN_VOICED_SECONDS of voiced frames, else None."""
    name = next((c for c in columns if c.startswith('voicingFinalUnclipped')), None)
    if name is None:
        return None
    voiced = float(np.sum(np.nan_to_num(np.asarray(lld)[:, list(columns).index(name)]) > VOICING_THRESHOLD)) * hop
    if voiced < MIN_VOICED_SECONDS:
        return (f'no speech found: {voiced:.2f} s of voiced frames (< {MIN_VOICED_SECONDS} s); the values '
                f'describe silence or noise, not an emotion')
    return None
