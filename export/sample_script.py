"""What happens in the sample corpus's session: the parent's utterances (a small grammar, Zipfian by rank,
naming what is in view, something absent, or nothing) and where the child looks (at the scene or away)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from firstwords.export.sample_scene import Scene

FPS = 5.0  # CVCL samples frames at 5 per second
# Things are kept together (shoes by the door, clothes in the wardrobe): what the child sees on looking away from
# an object is mostly something of the same kind. Cross-situational learners find such consistent company hard.
PLACES = [("shirt", "pants", "sweater", "dress", "coat"), ("sandal", "shoe", "boot")]
SAME_PLACE = 0.8  # chance the other toy seen on looking away is kept with the main object

# Child-directed speech, most common first: template choice is Zipfian by rank, so word frequencies come out
# Zipfian with function words everywhere. {w} is a category word.
NAMING = ["look at the {w}", "where's the {w}?", "that's a {w}", "look at your {w}!", "see the {w}?",
          "is that a {w}?", "the {w}", "you want the {w}?", "here's your {w}", "{w}!", "can you find the {w}?",
          "it's a {w}", "a {w}", "where is your {w}?", "oh a big {w}", "do you like the {w}?", "give me the {w}",
          "i see a {w}", "what a nice {w}", "let's put the {w} away", "that's your {w}", "you have a {w}",
          "can you say {w}?", "the {w} is here", "touch the {w}"]
CHATTER = ["look at that", "all done", "you want more?", "good job", "put it on", "what's that?", "okay",
           "yeah", "here you go", "come here", "oh my", "that's it", "are you hungry?", "let's go", "uh oh",
           "you did it", "where did it go?", "can you see it?", "no no", "what do you see?", "look!", "yes",
           "there you go", "let me see", "who's that?", "you're so silly", "it's time for a nap", "up you go",
           "do you want to play?", "let's play", "all gone", "thank you", "peekaboo", "bye bye", "hi baby",
           "it's okay", "is it nice?", "what are you doing?", "i know", "one more time", "that's funny",
           "where are you going?", "you like that?", "careful", "sit down please", "what is it?", "wow",
           "let's clean up", "are you tired?", "i love you"]


def zipf_pick(rng: np.random.Generator, items: list[str], exponent: float = 1.0) -> str:
    w = 1.0 / np.arange(1, len(items) + 1) ** exponent
    return items[rng.choice(len(items), p=w / w.sum())]


def utterance_for(rng: np.random.Generator, primary: str | None, in_view: list[str], categories: list[str],
                  cat_weights: np.ndarray, p_name_in_view: float,
                  p_name_absent: float) -> tuple[str, list[str], str]:
    """(text, categories named, kind) with kind in {"in_view", "absent", "none"}. In view, the parent names the
    main object (the one the child attends to); an absent name is of nothing in view."""
    r = rng.random()
    if primary is not None and r < p_name_in_view:
        return zipf_pick(rng, NAMING).format(w=primary), [primary], "in_view"
    if r < (p_name_in_view if primary is not None else 0.0) + p_name_absent:
        others = [c for c in categories if c not in in_view]
        w = np.array([cat_weights[categories.index(c)] for c in others])
        word = others[rng.choice(len(others), p=w / w.sum())]
        return zipf_pick(rng, NAMING).format(w=word), [word], "absent"
    return zipf_pick(rng, CHATTER, 0.9), [], "none"


def speech_seconds(text: str, rng: np.random.Generator) -> float:
    return 0.3 + 0.24 * len(text.split()) + rng.uniform(0, 0.2)


def gaze_path(rng: np.random.Generator, n_frames: int, look_away: float) -> list[bool]:
    """Per frame of a scene, whether the child looks at the scene's main object (True) or away (False).

    A head-cam does not stay on what is being named: infants look away and back within seconds (Yu & Smith
    2012 report sustained looks of a few seconds). A two-state chain with exponential dwell times, starting on the
    object (a scene is what the child turned to); `look_away` is the long-run share of time spent looking away."""
    if look_away <= 0.0:
        return [True] * n_frames
    on_mean = 2.4  # seconds of a look at the object (mean)
    away_mean = on_mean * look_away / (1.0 - look_away)
    out: list[bool] = []
    state = True
    while len(out) < n_frames:
        dwell = rng.exponential(on_mean if state else away_mean)
        out += [state] * max(1, round(dwell * FPS))
        state = not state
    return out[:n_frames]


def plan_session(rng: np.random.Generator, cats: list[str], cat_w: np.ndarray, next_instance: Callable[[str], int],
                 total: float, seed: int, look_away: float) -> tuple[list[dict], list[dict], list[dict], list[tuple],
                                                                      float]:
    """The session, episode by episode, until `total` seconds: (frames, utterances, episodes, render jobs,
    duration). A scene has a main object (sometimes none) and maybe a distractor; the parent says one to three
    utterances; the child's gaze may leave the scene. Frames are planned here and rendered by the caller."""
    frames_meta: list[dict] = []
    utterances: list[dict] = []
    episodes: list[dict] = []
    t = 0.0
    jobs: list[tuple] = []
    while t < total:
        ep = len(episodes)
        has_obj = rng.random() > 0.12
        primary = cats[rng.choice(len(cats), p=cat_w)] if has_obj else None
        distractor = None
        if has_obj and rng.random() < 0.25:  # an empty scene stays empty (clutter only)
            distractor = cats[rng.choice(len(cats), p=cat_w)]
            while distractor == primary:
                distractor = cats[rng.choice(len(cats), p=cat_w)]
        scene = Scene(primary, next_instance(primary) if primary else None,
                      distractor, next_instance(distractor) if distractor else None)
        looked_at = [c for c in (primary, distractor) if c]  # in view while the child looks at the scene
        # looking away shows another part of the room: half the time another toy (a category not in the scene)
        grng = np.random.default_rng([seed, ep, 3])
        away_obj = None
        if primary is not None and look_away > 0 and grng.random() < 0.5:
            others = [c for c in cats if c not in looked_at]
            place = next((pl for pl in PLACES if primary in pl), ())
            near = [c for c in others if c in place]
            if near and grng.random() < SAME_PLACE:
                others = near
            w_o = np.array([cat_w[cats.index(c)] for c in others])
            away_obj = others[grng.choice(len(others), p=w_o / w_o.sum())]
        away_scene = Scene(away_obj, next_instance(away_obj) if away_obj else None, None, None)
        in_view = looked_at + ([away_obj] if away_obj else [])  # in the room: never named as absent
        # utterances of this episode: a few, with gaps; the scene lasts until the last one's window ends
        ep_start = t
        n_utt = int(rng.integers(1, 4))
        for _ in range(n_utt):
            text, named, kind = utterance_for(rng, primary, in_view, cats, cat_w, 0.47, 0.10)
            dur = speech_seconds(text, rng)
            gap = 0.1 + float(min(rng.exponential(0.5), 4.0))
            utterances.append({"text": text, "start": round(t, 2), "end": round(t + dur, 2), "named": named,
                               "kind": kind, "in_view": in_view, "episode": ep,
                               "speaker": "M" if rng.random() < 0.8 else "F"})
            t += dur + gap
        ep_end = max(t, ep_start + 2.0)  # a scene lasts at least 2 s
        t = ep_end
        # frames at 5 fps: frame k is at time k / FPS; rendered below, in parallel
        k0, k1 = math.ceil(round(ep_start * FPS, 6)), math.ceil(round(ep_end * FPS, 6))
        gaze = gaze_path(grng, k1 - k0, look_away if primary is not None else 0.0)
        for k, on in zip(range(k0, k1), gaze):
            frames_meta.append({"t": round(k / FPS, 2), "file": f"frames/{k:06d}.jpg",
                                "in_view": looked_at if on else ([away_obj] if away_obj else []),
                                "episode": ep, "looking": "scene" if on else "away"})
        jobs.append((ep, scene, away_scene, gaze, k0))
        episodes.append({"episode": ep, "start": round(ep_start, 2), "end": round(ep_end, 2),
                         "primary": primary, "distractor": distractor, "away": away_obj,
                         "instances": [f"train:{i}" for i in (scene.primary_instance, scene.distractor_instance,
                                                               away_scene.primary_instance) if i is not None],
                         "frames": [k0, k1], "looking_at_scene": round(sum(gaze) / max(len(gaze), 1), 3)})
    return frames_meta, utterances, episodes, jobs, t
