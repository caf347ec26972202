"""GR00T N1.5 checkpoint tools: inspect a checkpoint's keys and statistics, or convert its weights' dtype.

    python groot_tools.py info checkpoints/groot_n15_small_so101_sim
    python groot_tools.py convert SRC DST --dtype bfloat16
"""

from __future__ import annotations

import argparse

import torch

from command_line import BadInput
from groot_checkpoint import convert_checkpoint, load_metadata, print_info, resolve_checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="GR00T N1.5 checkpoints: inspect one, or convert its weights' dtype.")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="print modality keys and statistics (reads no weights)")
    info.add_argument("checkpoint", help="checkpoint directory or Hugging Face hub id")
    info.add_argument("--revision", default=None, help="hub branch/tag/commit")
    info.add_argument("--embodiment-tag", default="new_embodiment")
    convert = commands.add_parser("convert", help="copy a checkpoint directory with its weights stored in another dtype")
    convert.add_argument("checkpoint", help="checkpoint directory")
    convert.add_argument("destination", help="new (or empty) directory to write")
    convert.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                         help="dtype of the stored weights (default bfloat16: half of float32's size); config.json is kept")
    args = parser.parse_args(argv)

    try:
        if args.command == "convert":
            print(f"wrote {convert_checkpoint(args.checkpoint, args.destination, getattr(torch, args.dtype))}")
        else:
            directory = resolve_checkpoint(args.checkpoint, args.revision, weights=False)
            print_info(directory, load_metadata(directory, args.embodiment_tag))
    except (OSError, ValueError) as error:  # a missing or malformed checkpoint, a destination in use
        raise BadInput(" ".join(str(error).split())) from None  # the hub's messages span lines



if __name__ == "__main__":
    main()
