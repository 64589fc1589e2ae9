"""Frame sources: video files and image folders through real OpenCV; a vanished camera is retried."""

import json
import threading

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from firstwords.edge.capture import Backoff, FrameSource, OpenCVCamera, ResilientCamera
from firstwords.edge.errors import DataError, DeviceError
from firstwords.edge.frame_files import (
    ImageFolderSource,
    PacedSource,
    VideoFileSource,
    open_frame_file_source,
)


def colour_frame(i, w=64, h=48):
    f = np.zeros((h, w, 3), np.uint8)
    f[..., 0] = (i * 20) % 256  # red encodes the index
    f[..., 2] = 200
    return f


def write_video(path, n, fps=10.0, w=64, h=48):
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for i in range(n):
        vw.write(cv2.cvtColor(colour_frame(i, w, h), cv2.COLOR_RGB2BGR))
    vw.release()


def test_video_file_source_times_rgb_and_fps_thinning(tmp_path):
    path = tmp_path / "v.avi"
    write_video(path, 20, fps=10)
    src = VideoFileSource(path)
    assert isinstance(src, FrameSource)
    frames = list(src)
    assert len(frames) == 20 and frames[3][0] == pytest.approx(0.3)
    _, f = frames[5]
    assert f.dtype == np.uint8 and f.shape == (48, 64, 3)
    assert abs(int(f[..., 0].mean()) - 100) < 8 and f[..., 2].mean() > 180  # RGB order, not BGR
    thin = list(VideoFileSource(path, fps=5, size=(32, 24)))
    assert [round(t, 2) for t, _ in thin] == [round(0.2 * i, 2) for i in range(10)]
    assert thin[0][1].shape == (24, 32, 3)
    assert VideoFileSource(path).duration() == pytest.approx(2.0)


def test_missing_video_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such video"):
        VideoFileSource(tmp_path / "nope.avi")


def test_image_folder_times_from_names_and_sidecar(tmp_path):
    d = tmp_path / "idx"
    d.mkdir()
    for i in (0, 1, 2, 10):
        cv2.imwrite(str(d / f"{i:06d}.png"), colour_frame(i))
    src = ImageFolderSource(d, index_fps=5)
    assert [t for t, _ in src] == pytest.approx([0.0, 0.2, 0.4, 2.0])

    s = tmp_path / "secs"
    s.mkdir()
    for t in (0.5, 1.25):
        cv2.imwrite(str(s / f"t_{t:.2f}.png"), colour_frame(1))
    assert [t for t, _ in open_frame_file_source(s)] == pytest.approx([0.5, 1.25])

    j = tmp_path / "side"
    j.mkdir()
    cv2.imwrite(str(j / "b.png"), colour_frame(1))
    cv2.imwrite(str(j / "a.png"), colour_frame(2))
    (j / "timestamps.json").write_text(json.dumps({"a.png": 3.0, "b.png": 1.0}))
    got = list(ImageFolderSource(j, fps=5))
    assert [t for t, _ in got] == [1.0, 3.0]

    bad = tmp_path / "bad"
    bad.mkdir()
    cv2.imwrite(str(bad / "cat.png"), colour_frame(1))
    with pytest.raises(DataError, match="timestamps.json"):
        ImageFolderSource(bad)


class FlakyReader:
    """Hardware edge: a camera that delivers `good` frames, then fails (unplugged)."""

    def __init__(self, log, good):
        self.log, self.good, self.n = log, good, 0

    def read(self):
        self.n += 1
        if self.n > self.good:
            raise OSError("VIDIOC_DQBUF: No such device")
        return colour_frame(self.n)

    def release(self):
        self.log.append("release")


def test_vanished_camera_is_retried_with_backoff_and_counted():
    opened, released = [], []

    def open_reader():
        opened.append(1)
        if len(opened) == 2:  # the first reopening fails: device not back yet
            raise OSError("cannot open /dev/video0")
        return FlakyReader(released, good=3)

    cam = ResilientCamera(open_reader, fps=1e6, name="flaky", backoff=Backoff(first=0.001, maximum=0.004))
    got = []
    for t, _ in cam:
        got.append(t)
        if len(got) == 6:
            cam.close()
    assert len(got) == 6 and got == sorted(got)
    assert cam.stats.read_failures == 1 and cam.stats.open_failures == 1 and cam.stats.reconnects == 1
    assert cam.stats.frames == 6 and len(released) == 2  # the dead reader and, at close, the live one


def test_backoff_grows_to_a_ceiling():
    b = Backoff(first=0.5, factor=2, maximum=3)
    assert [b.next_delay() for _ in range(5)] == [0.5, 1, 2, 3, 3]
    b.reset()
    assert b.next_delay() == 0.5


def test_opencv_camera_on_missing_device_gives_up_with_device_error(tmp_path):
    cam = OpenCVCamera(str(tmp_path / "video99"), 64, 48, 5, backoff=Backoff(first=0.001),
                       max_consecutive_failures=3)
    with pytest.raises(DeviceError, match="not used by another program"):
        list(cam)
    assert cam.stats.open_failures == 3


def test_opencv_camera_reopens_a_stream_that_ends(tmp_path):
    """A stream that stops delivering (here: a file's end) is released and reopened, not the end of
    capture."""
    path = tmp_path / "v.avi"
    write_video(path, 4)
    cam = OpenCVCamera(str(path), 64, 48, fps=1000, backoff=Backoff(first=0.001))
    for n, _ in enumerate(cam, start=1):
        if n == 6:
            cam.close()
    assert cam.stats.read_failures >= 1 and cam.stats.reconnects >= 1


def test_paced_source_can_be_closed_from_another_thread(tmp_path):
    path = tmp_path / "v.avi"
    write_video(path, 40, fps=10)
    src = PacedSource(VideoFileSource(path), speed=1.0)
    threading.Timer(0.25, src.close).start()
    got = [t for t, _ in src]
    assert 1 <= len(got) < 10 and got[0] == 0.0
