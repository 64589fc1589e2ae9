"""The live microphone: `sounddevice.InputStream` (PortAudio) as in sherpa-onnx's microphone examples.

The callback only copies the block into a bounded queue (never blocks; a full queue drops the block and counts
it), the consumer resamples to 16 kHz and yields edge.hear.AudioBlock's stamped with `time.monotonic()`
seconds taken at stream start and advanced by the sample count, so dropped blocks show up as a jump, never as
drift. The device is chosen by flag, else $FIRSTWORDS_AUDIO_DEVICE, else the system default.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator

import numpy as np
from firstwords.edge.errors import DeviceError, InputError, MissingExtraError
from firstwords.edge.hear import (
    MAX_SOURCE_RATE,
    MIN_SOURCE_RATE,
    SAMPLE_RATE,
    AudioBlock,
    Resampler,
    _to_mono,
)

log = logging.getLogger(__name__)

DEVICE_ENV = "FIRSTWORDS_AUDIO_DEVICE"
SOUNDDEVICE_HINT = ("pip install 'firstwords[audio]' (sounddevice); it also needs the PortAudio library: "
                    "sudo apt-get install libportaudio2")


def _import_sounddevice():
    try:
        import sounddevice
    except ImportError as e:
        raise MissingExtraError(f"live audio needs sounddevice: {SOUNDDEVICE_HINT}") from e
    except OSError as e:  # sounddevice raises OSError('PortAudio library not found')
        raise MissingExtraError(f"sounddevice cannot load PortAudio ({e}): sudo apt-get install "
                                "libportaudio2") from e
    return sounddevice


def list_input_devices() -> list[dict]:
    """Input-capable devices as [{index, name, channels, default_samplerate, hostapi}] (for `firstwords
    doctor`)."""
    sd = _import_sounddevice()
    out = []
    for i, d in enumerate(sd.query_devices()):
        if d.get("max_input_channels", 0) > 0:
            out.append({"index": i, "name": d["name"], "channels": int(d["max_input_channels"]),
                        "default_samplerate": float(d["default_samplerate"]),
                        "hostapi": sd.query_hostapis(d["hostapi"])["name"]})
    return out


def resolve_device(device: int | str | None) -> int | str | None:
    """Flag beats environment (FIRSTWORDS_AUDIO_DEVICE) beats the system default (None).

    A string of digits is a device index; any other string is a (sub)name PortAudio matches.
    """
    if device is None or device == "":
        device = os.environ.get(DEVICE_ENV) or None
    if isinstance(device, str):
        device = device.strip()
        if device.lstrip("-").isdigit():
            return int(device)
    return device


class MicrophoneSource:
    """Live microphone via `sounddevice.InputStream` (opened in `start()` / on first iteration, never at
    import).

    device: index or name; None -> $FIRSTWORDS_AUDIO_DEVICE, else the system default input.
    device_rate: capture rate; None -> 16 kHz if the device accepts it, else its default rate (then
    resampled). queue_blocks: bounded queue length between the PortAudio thread and the consumer (~32 ms
    blocks). stall_timeout: seconds without a block before iteration raises DeviceError (microphone gone).
    Counters: `overflows` = blocks dropped because the queue was full; `input_overflows` = PortAudio's own
    input-overflow flags (samples lost inside the driver); `bad_blocks` = blocks with NaN/Inf, dropped.
    A drop shows as a jump in block times (times come from the sample count, dropped blocks included).
    """

    def __init__(self, device: int | str | None = None, device_rate: int | None = None, channels: int = 1,
                 block_ms: float = 32.0, queue_blocks: int = 256, stall_timeout: float = 5.0):
        if queue_blocks < 1 or block_ms <= 0 or channels < 1:
            raise InputError("queue_blocks, block_ms and channels must be positive")
        if device_rate is not None and (isinstance(device_rate, bool)
                                        or not isinstance(device_rate, (int, np.integer))
                                        or not MIN_SOURCE_RATE <= device_rate <= MAX_SOURCE_RATE):
            raise InputError(f"device_rate must be an integer from {MIN_SOURCE_RATE} to {MAX_SOURCE_RATE} Hz "
                             f"(or None for the device's own), got {device_rate!r}")
        self.device = resolve_device(device)
        self.device_rate = device_rate
        self.channels = channels
        self.block_ms = block_ms
        self.stall_timeout = stall_timeout
        self._queue: queue.Queue = queue.Queue(maxsize=queue_blocks)
        self._lock = threading.Lock()
        self.overflows = 0
        self.input_overflows = 0
        self.blocks_captured = 0
        self.bad_blocks = 0  # blocks with NaN/Inf samples, dropped
        self._frames_seen = 0  # device-rate frames delivered by PortAudio, dropped ones included
        self._stream = None
        self._closed = False
        self.t0 = 0.0
        self.rate = 0

    # -- PortAudio thread: copy and return, never block --
    def _callback(self, indata, frames, time_info, status) -> None:
        start = self._frames_seen
        self._frames_seen += frames
        if status and status.input_overflow:
            self.input_overflows += 1
        try:
            self._queue.put_nowait((start, indata.copy()))
            self.blocks_captured += 1
        except queue.Full:
            self.overflows += 1

    def start(self) -> None:
        if self._stream is not None:
            return
        if self._closed:
            raise DeviceError("this MicrophoneSource was closed; make a new one")
        sd = _import_sounddevice()
        try:
            info = sd.query_devices(self.device, "input")
        except (ValueError, sd.PortAudioError) as e:
            names = ", ".join(f"{d['index']}: {d['name']}" for d in list_input_devices()) or "none found"
            raise DeviceError(f"no audio input device {self.device!r} ({e}); input devices: {names}. "
                              f"Choose one with --audio-device or {DEVICE_ENV}") from e
        rate = self.device_rate
        if rate is None:
            try:
                sd.check_input_settings(device=self.device, samplerate=SAMPLE_RATE, channels=self.channels,
                                        dtype="float32")
                rate = SAMPLE_RATE
            except (ValueError, sd.PortAudioError):  # no 16 kHz here: capture at its rate and resample
                rate = int(info["default_samplerate"])
        self.rate = int(rate)
        blocksize = max(1, round(self.rate * self.block_ms / 1000))
        try:
            stream = sd.InputStream(device=self.device, channels=self.channels, samplerate=self.rate,
                                    dtype="float32", blocksize=blocksize, callback=self._callback)
            self.t0 = time.monotonic()
            stream.start()
        except Exception as e:  # PortAudioError, ValueError: bad device / rate / channels
            raise DeviceError(f"cannot open audio input {info['name']!r} at {self.rate} Hz, {self.channels} "
                              "ch "
                              f"({e}); try another --audio-device or device rate") from e
        self._stream = stream
        log.info("microphone %r open at %d Hz (block %d frames)", info["name"], self.rate, blocksize)

    def __iter__(self) -> Iterator[AudioBlock]:
        self.start()
        rs = Resampler(self.rate, SAMPLE_RATE)
        expected = 0  # next device frame index
        out_origin = 0  # 16 kHz sample index where the current resampler run started
        last_block = time.monotonic()
        while not self._closed:
            try:
                start, data = self._queue.get(timeout=min(0.1, self.stall_timeout))
            except queue.Empty:
                if self._closed:
                    break
                if time.monotonic() - last_block > self.stall_timeout:
                    raise DeviceError(f"the microphone delivered nothing for {self.stall_timeout:.1f} s "
                                      "(unplugged?); check the device and restart") from None
                continue
            last_block = time.monotonic()
            if not np.isfinite(data).all():  # a broken driver buffer: drop it (counted), never pass NaN on
                self.bad_blocks += 1
                continue
            if start != expected:  # blocks were dropped: restart resampling at the new position
                rs = Resampler(self.rate, SAMPLE_RATE)
                out_origin = round(start * SAMPLE_RATE / self.rate)
            n_before = rs.n_out
            y = rs.process(_to_mono(data))
            expected = start + len(data)
            if len(y):
                t = self.t0 + (out_origin + n_before) / SAMPLE_RATE
                yield AudioBlock(t, y)

    def stats(self) -> dict:
        return {"blocks_captured": self.blocks_captured, "overflows": self.overflows,
                "input_overflows": self.input_overflows, "bad_blocks": self.bad_blocks,
                "queued": self._queue.qsize()}

    def close(self) -> None:
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception as e:  # noqa: BLE001 - closing a vanished device must not mask the caller's error
                log.warning("closing the audio stream failed: %s", e)
