"""The ``generate`` and ``demo`` options of ``emotalk`` (torch-free: ``emotalk generate --help`` is instant).

The commands themselves run in :mod:`emotalk_pipeline.cli`, imported only once the arguments parsed.
"""

from __future__ import annotations

import argparse

DTYPES = ("float32", "bfloat16", "float16")
OUTPUT_POLICY = (
    "Existing outputs: a single --output that exists is refused unless --overwrite (then it is replaced "
    "atomically); in batch mode a row whose output exists is skipped (re-running finishes a batch) unless "
    "--overwrite. An output may never be one of the inputs."
)


def _pose(value: str) -> str | float:
    if value in ("natural", "still"):
        return value
    try:
        return float(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"pose must be 'natural', 'still' or a number, got {value!r}") from err


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``generate`` and ``demo``."""
    parser.add_argument(
        "--model", default=None, help="a save_pretrained folder or Hub id (default: the embedded model)"
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow running the Python code shipped inside --model (an exported Hub folder); off by default",
    )
    parser.add_argument(
        "--emotion",
        default="neutral",
        help="a label (neutral angry contempt disgusted fear happy sad surprised), 'auto', a blend "
        "'happy:0.7,surprised:0.3' or a schedule '0:neutral,2.5:happy' (default: neutral)",
    )
    parser.add_argument("--intensity", type=float, default=1.0, help="emotion strength in [0, 1] (default 1)")
    parser.add_argument("--pose", type=_pose, default="natural", help="natural | still | a scale (default natural)")
    parser.add_argument(
        "--photo-expression",
        choices=("replace", "keep"),
        default="replace",
        help="replace: remove the photo's own expression (e.g. a smile) so the emotion replaces it (default); "
        "keep: add the emotion to the photo's expression",
    )
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate in [1, 60] (default 25)")
    parser.add_argument("--no-paste-back", action="store_true", help="output the aligned face crop only")
    parser.add_argument("--no-blink", action="store_true", help="no procedural blinks")
    parser.add_argument("--seed", type=int, default=None, help="seed of the procedural motion (same seed, same video)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per generator batch (default 8)")
    parser.add_argument("--face-index", type=int, default=None, help="which face when the photo has several")
    parser.add_argument("--max-audio-seconds", type=float, default=None, help="refuse longer audio (default 600)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cpu)")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="model weights dtype (default float32)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (see above)")


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``generate`` command's options (on the umbrella's sub-parser or a stand-alone parser)."""
    parser.description = "Portrait + speech -> MP4, or a manifest of such jobs. " + OUTPUT_POLICY
    parser.add_argument("--image", help="portrait photo")
    parser.add_argument(
        "--reference-image",
        dest="reference_images",
        action="append",
        metavar="PATH",
        help="another photo of the same person (repeatable, up to 4): stage 2 fuses the details of every photo, "
        "--image stays the one animated (in a manifest: the optional 'reference_images' column, ';'-separated)",
    )
    parser.add_argument("--audio", help="speech (wav, mp3, flac, ogg, m4a)")
    parser.add_argument("--output", help="output .mp4 (refused if it exists, unless --overwrite)")
    parser.add_argument(
        "--manifest",
        help="a .csv/.jsonl of jobs: image,audio,emotion,intensity,output[,reference_images] (outputs relative to "
        "--output-dir)",
    )
    parser.add_argument("--output-dir", help="folder for the manifest's videos (created if missing)")
    add_generation_options(parser)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` command's options."""
    parser.description = "Render the bundled example (public-domain portrait, generated speech). " + OUTPUT_POLICY
    parser.add_argument("--output", default="emotalk_demo.mp4", help="output .mp4 (default emotalk_demo.mp4)")
    add_generation_options(parser)
    parser.set_defaults(emotion="happy", intensity=0.8)
