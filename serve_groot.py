"""Serve a GR00T N1.5 checkpoint over ZeroMQ with the Isaac-GR00T protocol (groot_server.py holds the server).

    python serve_groot.py checkpoints/groot_n15_small_so101_sim --port 5555 --noise zero
    GROOT_API_TOKEN=<secret> python serve_groot.py CHECKPOINT --host 0.0.0.0 --port 5555

The training and evaluation scripts reach it with `--groot.backend server --groot.host H --groot.port P`.
"""

from __future__ import annotations

import argparse
import math
import os

import zmq

from command_line import BadInput
from groot_checkpoint import DEFAULT_TOKENIZER
from groot_model import NOISE_MODES
from groot_policy import GR00TPolicy
from groot_server import (
    DEFAULT_MAX_BATCH, DEFAULT_MAX_IMAGE_SIDE, DEFAULT_MAX_MEGAPIXELS, DEFAULT_MAX_MESSAGE_MB, GR00TServer, RequestLimits,
)


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0..65535 (0 picks a free port)")
    return port


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got '{text}'")
    return value


def whole_number(low: int):
    """argparse type: an integer of at least `low`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low}, got '{text}'")
        return value
    return parse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a GR00T N1.5 checkpoint with the Isaac-GR00T ZeroMQ protocol.")
    parser.add_argument("checkpoint", help="checkpoint directory or Hugging Face hub id")
    parser.add_argument("--revision", default=None, help="hub branch/tag/commit")
    parser.add_argument("--embodiment-tag", default="new_embodiment")
    parser.add_argument("--groot-tokenizer", default=None,
                        help=f"tokenizer directory or hub id (default: the checkpoint's own tokenizer/ if it has one, else {DEFAULT_TOKENIZER})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only); --host 0.0.0.0 accepts clients "
                             "from the network, and should come with an API token (GROOT_API_TOKEN)")
    parser.add_argument("--port", type=port_number, default=5555, help="TCP port, 0..65535 (0 picks a free one; default 5555)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--noise", default="random", choices=NOISE_MODES,
                        help="where each chunk's flow starts: a Gaussian draw (random, Isaac's) or its mean (zero: the same "
                             "observation always gives the same chunk)")
    parser.add_argument("--dtype", default=None, choices=["bfloat16", "float32"], help="default: the checkpoint's config.json torch_dtype")
    parser.add_argument("--api-token", default=None,
                        help="token every request must carry. Default: the GROOT_API_TOKEN environment variable (no token "
                             "when unset or empty), which the training and evaluation scripts send as clients. Prefer the "
                             "variable: a token on the command line is visible to other users of this machine (ps). It "
                             "travels unencrypted, so on an untrusted network prefer an SSH tunnel to a 127.0.0.1 server")
    parser.add_argument("--max-message-mb", type=positive_number, default=DEFAULT_MAX_MESSAGE_MB,
                        help=f"largest request in MB of 10^6 bytes (default {DEFAULT_MAX_MESSAGE_MB}); a larger one is dropped "
                             f"unread, without a reply (its client times out). 64 envs x 2 cameras x 224x224x3 uint8 frames "
                             f"are 19.3 MB: raise it for more envs or larger frames")
    parser.add_argument("--max-batch", type=whole_number(1), default=DEFAULT_MAX_BATCH,
                        help=f"most observations (envs) per get_action (default {DEFAULT_MAX_BATCH}); a larger batch gets an error reply")
    parser.add_argument("--max-image-side", type=whole_number(2), default=DEFAULT_MAX_IMAGE_SIDE,
                        help=f"largest camera frame side in pixels (default {DEFAULT_MAX_IMAGE_SIDE})")
    parser.add_argument("--max-megapixels", type=positive_number, default=DEFAULT_MAX_MEGAPIXELS,
                        help=f"most pixels of all the frames of one get_action, in millions (default {DEFAULT_MAX_MEGAPIXELS:g}; "
                             f"64 envs x 2 cameras of 224x224 frames are 6.4)")
    args = parser.parse_args(argv)
    if args.api_token == "":
        parser.error("--api-token must not be empty (leave it out, and GROOT_API_TOKEN unset, for no token)")
    api_token = args.api_token or os.environ.get("GROOT_API_TOKEN") or None
    limits = RequestLimits(args.max_batch, args.max_image_side, math.ceil(args.max_megapixels * 1e6))

    # Bind before the slow model load: a taken port or a bad --host fails at once, and the warning comes first.
    try:
        server = GR00TServer(None, args.host, args.port, api_token, math.ceil(args.max_message_mb * 1_000_000), limits)
    except zmq.ZMQError as error:
        raise BadInput(f"cannot listen on tcp://{args.host}:{args.port} ({zmq.strerror(error.errno)}): choose another --port "
                       f"(0 picks a free one) or --host") from None
    try:
        server.policy = GR00TPolicy.from_pretrained(args.checkpoint, args.embodiment_tag, args.groot_tokenizer, args.dtype,
                                                    args.device, args.revision, noise=args.noise)
    except (OSError, ValueError) as error:
        server.socket.close()
        raise BadInput(" ".join(str(error).split())) from None  # the hub's messages span lines
    server.run()



if __name__ == "__main__":
    main()
