"""Vocal tract length normalisation for pocketsphinx: a frequency warp chosen per utterance from its pitch.

The general English acoustic model was trained on adult speech, mostly with long (male-like) vocal tracts.
A shorter vocal tract (a woman, a child, a parent speaking in child-directed pitch) puts every formant higher,
and the model hears other phones. pocketsphinx's front end can warp the frequency axis before the mel filters
(`warp_type` "inverse_linear": a frequency f is read as f / warp), so a warp above 1 moves the formants of a
short vocal tract back to where the model expects them.

Two front ends, chosen per utterance from its median pitch, which separates adult speakers by vocal tract
length: at or above `PITCH_SPLIT_HZ` (between the usual adult male range, ~85-155 Hz, and the female one,
~165-255 Hz) the spectrum is warped by `MAX_WARP`, below it not at all. The recogniser keeps one cepstral mean
per warp (edge.asr), so a man's and a woman's utterances in turn do not pull one mean back and forth. The
choice depends only on the utterance's audio, so a pool of decoders and its cepstral-mean tracker
(edge.asr_pool) pick the same warp for the same utterance.

Measured with tools/bench_hearing.py on the demo bundle (six voices, 144 namings; --seed 0 to choose, --seed 1
to confirm), without -> with: object recall 0.771 -> 0.806 and 0.736 -> 0.771; off-topic word error 0.302 ->
0.265 and 0.339 -> 0.325; object false alarms 0 -> 0 and 1 -> 0 in 1.9 min. The female voices gain most
(seed 0: flite slt 0.79 -> 0.92, espeak en-us+f3 0.50 -> 0.62). One fixed warp of 1.2 for every voice lowered
the male voices' recall instead (espeak en-us 0.75 -> 0.62, flite awb 0.83 -> 0.75).
On the demo session's six-voice soundtrack (energy VAD, one recogniser in order) the object words heard at the
memory's threshold went from 133 to 145 of 173 (false alarms 1 -> 2).

Cost: one autocorrelation per 20 ms hop over voiced frames, ~1 ms per second of audio here (numpy FFT).
"""

from __future__ import annotations

import numpy as np

PITCH_SPLIT_HZ = 165.0  # median pitch from which an utterance is warped
MAX_WARP = 1.2  # inverse_linear warp of those utterances (1.3 measured no better)
_FMIN, _FMAX = 60.0, 500.0  # Hz: the pitch range searched
_FRAME, _HOP = 640, 320  # samples at 16 kHz: 40 ms frames every 20 ms
_VOICED = 0.5  # normalised autocorrelation peak above which a frame counts as voiced
_BLOCK = 128  # frames analysed at once


def median_pitch(audio: np.ndarray, sample_rate: int = 16000) -> float:
    """Median fundamental frequency (Hz) of the utterance's loud voiced frames; 0.0 when fewer than 3 frames
    are voiced (silence, noise, whispering)."""
    a = np.asarray(audio, dtype=np.float32)
    if len(a) < _FRAME:
        return 0.0
    frames = np.lib.stride_tricks.sliding_window_view(a, _FRAME)[::_HOP]  # a view: no copy
    # in blocks of frames, so that a long utterance costs a few MB at most (the Pi Zero's RAM budget)
    energy = np.concatenate([(frames[i:i + _BLOCK].astype(np.float64) ** 2).mean(axis=1)
                             for i in range(0, len(frames), _BLOCK)])
    loud = np.flatnonzero(energy > 0.1 * np.percentile(energy, 95))  # speech, not the room's noise
    lo, hi = int(sample_rate / _FMAX), int(sample_rate / _FMIN)
    window = np.hanning(_FRAME)
    pitches = []
    for i in range(0, len(loud), _BLOCK):
        f = frames[loud[i:i + _BLOCK]].astype(np.float64)
        f = f - f.mean(axis=1, keepdims=True)
        ac = np.fft.irfft(np.abs(np.fft.rfft(f * window, 2 * _FRAME)) ** 2)[:, :_FRAME]  # autocorrelation
        ac = ac / np.maximum(ac[:, :1], 1e-12)
        lag = lo + ac[:, lo:hi].argmax(axis=1)
        voiced = ac[np.arange(len(ac)), lag] > _VOICED
        pitches.append(sample_rate / lag[voiced])
    voiced_pitch = np.concatenate(pitches)
    return float(np.median(voiced_pitch)) if len(voiced_pitch) >= 3 else 0.0


def warp_for_pitch(pitch_hz: float, max_warp: float = MAX_WARP) -> float:
    """The frequency warp for a speaker of this median pitch (1.0: none; unvoiced audio: none)."""
    return float(max_warp) if max_warp > 1.0 and pitch_hz >= PITCH_SPLIT_HZ else 1.0


def utterance_warp(audio: np.ndarray, max_warp: float = MAX_WARP) -> float:
    return warp_for_pitch(median_pitch(audio), max_warp)
