"""Audio input: read any file soundfile understands, mix to mono, resample to 16 kHz."""
from pathlib import Path

import numpy as np
import soundfile as sf

from errors import ToolkitError

SR = 16000


class AudioError(ToolkitError):
    """An audio file that cannot be used; the message names the file and what to do."""


def load_audio(path, sr=SR, min_seconds=0.0):
    """Return a float32 mono signal at `sr` Hz.

    Raises AudioError with the file name and a remedy for missing, unreadable, empty
    or too-short files.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file does not exist (check the corpus root and the FileName column)")
    try:
        x, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError on bad headers
        raise AudioError(f"{path}: unreadable audio ({e}); re-export it as 16-bit PCM WAV "
                         f"or remove it from the label file") from None
    if x.size == 0:
        raise AudioError(f"{path}: the file holds no samples; remove it from the label file")
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if file_sr != sr:
        import soxr
        x = soxr.resample(x, file_sr, sr, quality="HQ").astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{path}: audio contains NaN or Inf samples; re-export the file")
    if len(x) < min_seconds * sr:
        raise AudioError(f"{path}: only {len(x) / sr:.2f} s of audio, at least {min_seconds} s needed")
    return np.ascontiguousarray(x, dtype=np.float32)
