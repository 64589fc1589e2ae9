#!/usr/bin/env bash
# Installs the Debian packages firstwords' demo and tests use, when we can (root + apt-get).
#   espeak-ng       speaks the sample session's soundtrack (edge.synth: en-us, en-us+f3 ... voices)
#   flite           more voices for the soundtrack and tools/bench_hearing.py (awb, rms, slt)
#   festival festvox-us-slt-hts   festival's HTS voice: a sixth, smoother voice for the same
#   libportaudio2   the PortAudio library sounddevice needs for live audio
#   sox             audio conversion used by tests
#   dataset-fashion-mnist  full source for tools/build_sample_corpus.py (a subset ships in data/)
#   ffmpeg          replay of a video's own soundtrack (optional: a .wav beside the video works without it)
#   chromium        the report test renders `firstwords report`'s HTML headless to a PNG (tests/test_report.py)
#   strace          the privacy test watches a replay's system calls: no internet socket (onnxruntime telemetry)
#   sphinxtrain sphinxbase-utils pocketsphinx   speaker adaptation (`firstwords adapt`, edge.asr_adapt): bw,
#                   map_adapt and mllr_solve, sphinx_fe, pocketsphinx_mdef_convert (the recogniser itself is the pip wheel)
# Elsewhere it prints what to install; everything still runs without them (transcript path, committed subset).
set -u
pkgs=(espeak-ng flite festival festvox-us-slt-hts libportaudio2 sox dataset-fashion-mnist pulseaudio libasound2-plugins
      ffmpeg chromium strace sphinxtrain sphinxbase-utils pocketsphinx)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/tmp/firstwords-apt.log 2>&1 \
    || echo "warning: apt-get failed (see /tmp/firstwords-apt.log); continuing without: ${missing[*]}"
else
  echo "note: optional system packages missing: ${missing[*]} (e.g. sudo apt-get install ${missing[*]}); continuing"
fi
exit 0
