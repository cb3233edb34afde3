"""Torch-free building blocks shared by the model, the pipeline, training and evaluation (``emotalk_common``).

Nothing here imports torch, transformers or any other EmoTalk package, so evaluation can use it and stay
independent of the model, and every package above it imports it in one direction only.
"""
