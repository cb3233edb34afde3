"""EmoTalk training: data preparation (``emotalk prepare``) and ``accelerate launch`` scripts for both stages.

Installed under the specific import name ``emotalk_training`` (the repository folder is ``training/``).

- :mod:`emotalk_training.prepare` — videos → a dataset folder: per clip a shard (face-mesh landmarks in
  normalized crop coordinates, aligned crops, 16 kHz audio, a per-frame validity mask) and ``index.json``.
- :mod:`emotalk_training.data` — the datasets the training scripts read (stage-1 windows, stage-2 pairs).
- :mod:`emotalk_training.phones` — the ARPAbet inventory of stage 1's auxiliary phone target.
- :mod:`emotalk_training.geometry` — stage-1 training targets (canonical expression, relative head pose,
  gaze, blink) from tracked landmarks.
- :mod:`emotalk_training.losses`, :mod:`emotalk_training.discriminators`,
  :mod:`emotalk_training.emotion_encoder` — the training-only losses and networks.
- ``training/train_landmarks.py`` (stage 1) and ``training/train_generator.py`` (stage 2) — one-file
  training scripts (``parse_args()`` + ``main(args)``) in the style of diffusers' examples.

See ``training/README.md`` for the dataset contract and the custom-speaker recipe. The recipe that made the
default weights (speech corpus, articulation teacher) is not part of this package: ``recipes/default_model/``.
Nothing heavy is imported here: ``emotalk prepare`` stays fast to start.
"""
