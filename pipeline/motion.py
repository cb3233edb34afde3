"""Seeded procedural motion: blinks, head-motion variation and gaze saccades.

Stage 1 predicts the audio-driven part of head pose, gaze and blinks; what the audio does not
determine (when a blink happens, where the eyes wander, the slow idiosyncratic sway of the head) is
random. It is drawn here from a seeded generator, so ``seed`` fully determines the video, and mixed
with the model's prediction by the pipeline (``pose``, ``blink`` options).
"""

from __future__ import annotations

import numpy as np


def blink_track(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """``(T, 2)`` eyelid closure in [0, 1]: blinks every 2–6 s, each closing for 100–200 ms (raised cosine)."""
    track = np.zeros(num_frames, dtype=np.float32)
    time = rng.uniform(0.5, 3.0)
    duration_frames = num_frames / fps
    times = np.arange(num_frames) / fps
    while time < duration_frames:
        length = rng.uniform(0.10, 0.20) + 2.0 / fps  # closing + opening, at least two frames wide
        phase = (times - time) / length
        inside = (phase >= 0) & (phase <= 1)
        track[inside] = np.maximum(track[inside], np.sin(np.pi * phase[inside]) ** 2)
        time += rng.uniform(2.0, 6.0)
    return np.repeat(track[:, None], 2, axis=1)


def smooth_noise(num_frames: int, fps: float, rng: np.random.Generator, channels: int, max_hz: float) -> np.ndarray:
    """``(T, C)`` smooth random signals with unit RMS: sums of a few sinusoids below ``max_hz`` with random phases."""
    times = np.arange(num_frames)[:, None] / fps
    out = np.zeros((num_frames, channels))
    for _ in range(4):
        frequency = rng.uniform(0.05, max_hz, size=channels)
        phase = rng.uniform(0, 2 * np.pi, size=channels)
        out += rng.normal(size=channels) * np.sin(2 * np.pi * frequency * times + phase)
    rms = np.sqrt((out**2).mean(0, keepdims=True)) + 1e-8
    return (out / rms).astype(np.float32)


# Amplitudes of the random head sway: yaw, pitch, roll (radians), tx, ty (eye distances), log-scale.
HEAD_SWAY = np.array([0.06, 0.04, 0.025, 0.04, 0.03, 0.01], dtype=np.float32)


def audio_energy(audio: np.ndarray, num_frames: int, fps: float, sampling_rate: int = 16000) -> np.ndarray:
    """``(T,)`` RMS loudness per video frame, smoothed over ~0.5 s and scaled to mean 1 over voiced frames."""
    hop = sampling_rate / fps
    frames = np.zeros(num_frames, dtype=np.float32)
    for t in range(num_frames):
        chunk = audio[int(t * hop) : int((t + 1) * hop)]
        frames[t] = np.sqrt(np.mean(chunk**2)) if chunk.size else 0.0
    width = max(1, min(round(0.5 * fps), num_frames))  # np.convolve(mode='same') returns the longer length
    kernel = np.hanning(width + 2)[1:-1]
    frames = np.convolve(frames, kernel / kernel.sum(), mode="same")
    voiced = frames[frames > 0.1 * frames.max()] if frames.max() > 0 else frames
    return frames / (voiced.mean() + 1e-8)


def head_sway(num_frames: int, fps: float, rng: np.random.Generator, energy: np.ndarray | None = None) -> np.ndarray:
    """``(T, 6)`` head-pose variation; louder speech moves the head more (factor 0.5 to 1.5)."""
    sway = smooth_noise(num_frames, fps, rng, 6, max_hz=0.6) * HEAD_SWAY
    if energy is not None:
        sway = sway * np.clip(0.5 + 0.5 * energy, 0.5, 1.5)[:, None]
    return sway.astype(np.float32)


def gaze_saccades(num_frames: int, fps: float, rng: np.random.Generator, amplitude: float = 0.06) -> np.ndarray:
    """``(T, 2)`` gaze angles (radians): fixations held 0.5–2.5 s, mostly near the camera, quick saccades between."""
    out = np.zeros((num_frames, 2), dtype=np.float32)
    target = np.zeros(2)
    t = 0
    while t < num_frames:
        hold = int(rng.uniform(0.5, 2.5) * fps)
        previous, target = target, rng.normal(scale=amplitude, size=2) * (rng.random() < 0.7)
        ramp = np.clip(np.arange(hold) / max(1.0, 0.06 * fps), 0, 1)[:, None]  # ~60 ms saccade
        segment = previous * (1 - ramp) + target * ramp
        out[t : t + hold] = segment[: num_frames - t]
        t += hold
    return out
