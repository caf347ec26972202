"""GR00T N1.5 over the network: Isaac-GR00T's inference-server protocol, as a client and as a server.

The protocol (Isaac-GR00T's, Aug 2025+): ZeroMQ REQ/REP, each message a msgpack dict, numpy arrays as
.npy bytes. Endpoints: ping, get_action, get_modality_config, kill, and ours, get_metadata. The server
listens on 127.0.0.1 unless told otherwise.

    client = GR00TClient("localhost", 5555)   # same methods as groot_policy.GR00TPolicy
    chunk = client.get_action(observation)

    python serve_groot.py CHECKPOINT                     # serve it on tcp://127.0.0.1:5555 (this machine only)
    python serve_groot.py CHECKPOINT --port 5556 --noise zero
    GROOT_API_TOKEN=... python serve_groot.py CHECKPOINT --host 0.0.0.0   # clients send the same token

The server bounds what one request may cost, in bytes (--max-message-mb) and in work (--max-batch,
--max-image-side, --max-megapixels), and takes only the types the model reads without coercion
(`check_request`); a request beyond them gets an error reply in microseconds.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

import msgpack
import numpy as np
import zmq

from groot_checkpoint import GR00TMetadata

# Server request cap. One get_action for 64 envs x 2 cameras x 224x224x3 uint8 frames is 19.3 MB
# (states and text add a few kB), so 64 MB leaves room for about 3x that.
DEFAULT_MAX_MESSAGE_MB = 64
# Work caps per get_action. Bytes alone do not bound work: every frame, however small, is resized to 224x224
# and encoded, so 51 kB of 800 2x2 frames once held the tiny test model's server for 27 s and 2.35 GB.
DEFAULT_MAX_BATCH = 64  # observations per request: the 64 envs the 64 MB message cap is sized for
DEFAULT_MAX_IMAGE_SIDE = 4096  # pixels a side: 4K cameras fit; the antialiased resize's kernel grows with the side
DEFAULT_MAX_MEGAPIXELS = 20.0  # all frames of a request: the 64 MB cap's worth of RGB, about 0.5 GB as float pixels
FRAMES_PER_OBSERVATION = 1  # N1.5's modality config reads one frame per camera and state key (delta_indices [0])
MAX_INSTRUCTION_CHARS = 1000  # a task is a sentence; the prompt's attention costs the square of its length


# ---------------------------------------------------------------------------------------------
# Inference server protocol (Isaac-GR00T's): ZeroMQ REQ/REP, msgpack, numpy arrays as .npy bytes.
# ---------------------------------------------------------------------------------------------


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, obj, allow_pickle=False)
        return {"__ndarray_class__": True, "as_npy": buffer.getvalue()}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send {type(obj).__name__} to a GR00T server")


def _decode(obj: dict) -> Any:
    if "__ndarray_class__" in obj:
        return np.load(io.BytesIO(obj["as_npy"]), allow_pickle=False)
    if "__ModalityConfig_class__" in obj:  # Isaac's pydantic ModalityConfig, as a plain dict here
        return json.loads(obj["as_json"])
    return obj


def pack(message: Any) -> bytes:
    return msgpack.packb(message, default=_encode)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=_decode)


class GR00TClient:
    """Client for the official Isaac-GR00T inference server (msgpack generation, Aug 2025+) and `GR00TServer`.

    Same interface as GR00TPolicy: get_action, modality_config, get_metadata (the last only on
    GR00TServer: Isaac servers do not expose statistics). Every call gives up after `timeout_s`
    with a TimeoutError instead of hanging; the socket is then recreated so the client stays usable."""

    def __init__(self, host: str = "localhost", port: int = 5555, timeout_s: float = 15.0, api_token: str | None = None):
        self.host, self.port, self.timeout_s, self.api_token = host, port, timeout_s, api_token
        self.socket = self._connect()

    def _connect(self) -> zmq.Socket:
        socket = zmq.Context.instance().socket(zmq.REQ)
        for option in (zmq.RCVTIMEO, zmq.SNDTIMEO):
            socket.setsockopt(option, int(self.timeout_s * 1000))
        socket.setsockopt(zmq.LINGER, 0)  # never block interpreter exit on unsent requests
        socket.connect(f"tcp://{self.host}:{self.port}")
        return socket

    def call(self, endpoint: str, data: dict | None = None) -> Any:
        """Send one request and wait for its reply; raises TimeoutError, ConnectionError or RuntimeError (server error)."""
        request = {"endpoint": endpoint} | ({} if data is None else {"data": data})
        if self.api_token:
            request["api_token"] = self.api_token
        address = f"{self.host}:{self.port}"
        payload = pack(request)
        try:
            self.socket.send(payload)
            reply = unpack(self.socket.recv())
        except zmq.Again:
            # A REQ socket that missed its reply cannot send again: replace it.
            self.socket.close()
            self.socket = self._connect()
            raise TimeoutError(
                f"no reply from the GR00T server at {address} to '{endpoint}' within {self.timeout_s:g} s. Is it running? "
                f"Start one with `python serve_groot.py CHECKPOINT --port {self.port}` or Isaac-GR00T's "
                f"`python scripts/inference_service.py --server --model_path CHECKPOINT --port {self.port}`. Or was the "
                f"request too big? This request was {len(payload) / 1e6:.1f} MB, and a GR00TServer drops requests over "
                f"its --max-message-mb (default {DEFAULT_MAX_MESSAGE_MB} MB) without a reply: send fewer envs per call."
            ) from None
        except zmq.ZMQError as err:
            self.socket.close()
            self.socket = self._connect()
            raise ConnectionError(f"cannot talk to the GR00T server at {address}: {err}") from err
        if isinstance(reply, dict) and "error" in reply:
            raise RuntimeError(f"GR00T server at {address} failed on '{endpoint}': {reply['error']}")
        return reply

    def ping(self) -> bool:
        """True if the server answers within the timeout."""
        try:
            self.call("ping")
            return True
        except (TimeoutError, ConnectionError):
            return False

    def get_action(self, observation: dict) -> dict[str, np.ndarray]:
        return self.call("get_action", observation)

    def modality_config(self) -> dict[str, dict[str, list]]:
        return self.call("get_modality_config")

    def get_metadata(self) -> GR00TMetadata:
        """The server's metadata, checked as a checkpoint's file is (ValueError naming the server if it is bad)."""
        try:
            return GR00TMetadata.from_reply(self.call("get_metadata"))
        except ValueError as error:
            raise ValueError(f"GR00T server at {self.host}:{self.port}: {error}") from None

    def kill(self) -> None:
        """Ask the server to stop after this reply. A GR00TServer on the network refuses unless it has an API token
        and this client sends it (RuntimeError with the reason)."""
        self.call("kill")

    def close(self) -> None:
        self.socket.close()


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach (127.0.0.0/8, ::1), as zmq reports a bound endpoint."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # not an IP address (an interface name): count it as reachable from the network
        return False


@dataclass(frozen=True)
class RequestLimits:
    """What one get_action may ask of the model; the message size is capped apart (max_message_bytes)."""

    max_batch: int = DEFAULT_MAX_BATCH
    max_image_side: int = DEFAULT_MAX_IMAGE_SIDE
    max_pixels: int = int(DEFAULT_MAX_MEGAPIXELS * 1e6)


def count_non_finite(array: np.ndarray) -> int:
    """NaN and inf in `array` as float32, the model's widest dtype (float64 beyond its range becomes inf)."""
    with np.errstate(over="ignore"):
        return array.size - np.count_nonzero(np.isfinite(np.asarray(array, dtype=np.float32)))


def check_request(observation: Any, limits: RequestLimits) -> None:
    """Raise ValueError, naming the key and the limit, unless `observation` is one the model reads as it is,
    within `limits`: video.* uint8 RGB frames (B, 1, H, W, 3), state.* numeric arrays (B, 1, D) finite as
    float32 (the model's widest dtype), annotation.* a string or B strings (each may be a one-string list:
    Isaac's (B, 1) layout). Without the batch axis (state (1, D), video (1, H, W, 3)) it is one observation.
    Nothing is coerced: a float frame would wrap into uint8, a string state parse as a number."""
    if not isinstance(observation, dict):
        raise ValueError(f"get_action takes an observation dict, got {type(observation).__name__}")
    arrays = {key: value for key, value in observation.items() if key.startswith(("video.", "state."))}
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"'{key}' must be a numpy array, got {type(value).__name__}")
    states = [value for key, value in arrays.items() if key.startswith("state.")]
    batched = not states or states[0].ndim == 3  # the policy's rule: state (T, D) is one observation
    batch_axis = "B, " if batched else ""
    for key, value in arrays.items():
        if key.startswith("video.") and not (value.dtype == np.uint8 and value.ndim == 4 + batched and value.shape[-1] == 3):
            raise ValueError(f"'{key}' must be uint8 RGB frames ({batch_axis}1, H, W, 3), got {value.dtype} {value.shape}")
        if key.startswith("state.") and not (value.dtype.kind in "iuf" and value.ndim == 2 + batched):
            raise ValueError(f"'{key}' must be a numeric array ({batch_axis}1, D), got {value.dtype} {value.shape}")

    batch_sizes = {key: value.shape[0] if batched else 1 for key, value in arrays.items()}
    if len(set(batch_sizes.values())) > 1:
        raise ValueError(f"batch sizes differ between keys: {batch_sizes}")
    batch = max(batch_sizes.values(), default=1)
    if not 1 <= batch <= limits.max_batch:
        raise ValueError(f"a batch of {batch} observations is outside this server's limit of 1 to {limits.max_batch} "
                         f"(--max-batch): send fewer envs per call, or restart the server with a larger --max-batch")
    pixels = 0
    for key, value in arrays.items():
        frames = value.shape[int(batched)]
        if frames != FRAMES_PER_OBSERVATION:
            raise ValueError(f"'{key}' has {frames} frames per observation; GR00T N1.5 takes {FRAMES_PER_OBSERVATION}")
        if key.startswith("video."):
            height, width = value.shape[-3:-1]
            if not 2 <= min(height, width) <= max(height, width) <= limits.max_image_side:
                raise ValueError(f"'{key}' frames are {height}x{width} pixels; this server takes 2 to {limits.max_image_side} "
                                 f"pixels a side (--max-image-side)")
            pixels += value.size // 3
    if pixels > limits.max_pixels:
        raise ValueError(f"the request's frames hold {pixels:,} pixels, over this server's limit of {limits.max_pixels:,} "
                         f"(--max-megapixels): send fewer envs per call, or smaller frames")

    for key, value in arrays.items():  # the sizes are bounded now: converting costs little
        if key.startswith("state."):
            bad = count_non_finite(value)
            if bad:
                raise ValueError(f"observation '{key}' holds {bad} NaN or inf value(s) as float32; send finite numbers "
                                 f"(a NaN state usually means the simulation diverged: reset that env)")
    for key, value in observation.items():
        if not key.startswith("annotation."):
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind == "U":
            value = value.tolist()
        texts = [value] if isinstance(value, str) else [None]
        if isinstance(value, list) and len(value) == batch:
            texts = [text[0] if isinstance(text, list) and len(text) == 1 else text for text in value]
        if not all(isinstance(text, str) for text in texts):
            raise ValueError(f"'{key}' must be a string or {batch} strings (one per observation), got {str(value)[:80]}")
        longest = max(len(text) for text in texts)
        if longest > MAX_INSTRUCTION_CHARS:
            raise ValueError(f"'{key}': an instruction of {longest:,} characters is over the limit of "
                             f"{MAX_INSTRUCTION_CHARS:,}; a task description is a sentence")


def check_actions(actions: dict[str, np.ndarray]) -> None:
    """Raise ValueError if the model answered NaN or inf: a chunk a robot must never execute."""
    for key, value in actions.items():
        bad = count_non_finite(value)
        if bad:
            raise ValueError(f"the model answered {bad} NaN or inf value(s) in '{key}' for this observation; are its "
                             f"states far outside the checkpoint's statistics (`python groot_tools.py info CHECKPOINT`)?")


class GR00TServer:
    """Serve a policy (GR00TPolicy, or anything with the same methods) with the Isaac protocol.

    Endpoints: ping, get_action, get_modality_config, kill, plus get_metadata (ours: statistics).
    `port=0` picks a free port (see `.port`). `run()` blocks until a client sends `kill`.

    Safe by default: it listens on 127.0.0.1 only (host="0.0.0.0" exposes it, best with `api_token`);
    `kill` needs the token, or, when there is none, a loopback-only server. A request over
    `max_message_bytes` is dropped unread, without a reply; a get_action beyond `limits`, of the wrong
    types or holding NaN or inf (see `check_request`) gets an error reply, not a model call; NaN or inf
    actions get an error reply too."""

    def __init__(self, policy, host: str = "127.0.0.1", port: int = 5555, api_token: str | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_MB * 1_000_000, limits: RequestLimits = RequestLimits()):
        if api_token is not None and not (isinstance(api_token, str) and api_token):
            raise ValueError("api_token must be a non-empty string, or None for no token")
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int) or max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be a positive integer, got {max_message_bytes!r}")
        self.policy, self.api_token, self.max_message_bytes, self.limits = policy, api_token, max_message_bytes, limits
        self.socket = zmq.Context.instance().socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        # What a connection can make the server hold before its token is read: zmq drops a peer as soon as a
        # frame's size header is over MAXMSGSIZE, before buffering any of it, and with RCVHWM 1 stops reading a
        # connection that has a request waiting (by default 1000 requests could queue per connection).
        self.socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.socket.setsockopt(zmq.RCVHWM, 1)
        self.socket.bind(f"tcp://{host}:{port or '*'}")
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)  # e.g. tcp://127.0.0.1:5555
        bound_host, bound_port = self.endpoint.removeprefix("tcp://").rsplit(":", 1)
        self.port, self.loopback = int(bound_port), is_loopback(bound_host)
        self.running = False
        if not self.loopback and api_token is None:
            print(f"WARNING: the GR00T server on {self.endpoint} takes requests from the network without an API token: "
                  f"anyone who can reach this port can use the model (only `kill` is refused). Restart it with "
                  f"an API token (GROOT_API_TOKEN=... or --api-token; clients send the same token), or keep the default --host 127.0.0.1 and reach it "
                  f"through an SSH tunnel.", file=sys.stderr, flush=True)

    def handle(self, message: bytes) -> bytes:
        """Reply to one request; any failure, even an undecodable message, becomes {"error": ...} as in Isaac,
        so the REP socket always answers and the server keeps running."""
        try:
            return pack(self.dispatch(unpack(message)))
        except Exception as err:
            return pack({"error": f"{type(err).__name__}: {err}"})

    def token_ok(self, token: Any) -> bool:
        # compare_digest takes the same time wherever the strings differ: the token cannot be guessed by timing.
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.api_token.encode())

    def dispatch(self, request: dict) -> Any:
        if self.api_token is not None and not self.token_ok(request.get("api_token")):
            return {"error": "Unauthorized: Invalid API token"}
        endpoint = request.get("endpoint", "get_action")
        if endpoint == "ping":
            return {"status": "ok", "message": "Server is running"}
        if endpoint == "kill":
            if self.api_token is None and not self.loopback:  # with a token, reaching here means it was valid
                return {"error": f"kill refused: the server on {self.endpoint} has no API token, so any host on the "
                                 f"network could stop it. Stop it on its own machine (Ctrl-C), or restart it with "
                                 f"--api-token TOKEN and send kill with that token."}
            self.running = False
            return {"status": "ok", "message": "Server is stopping"}
        if endpoint == "get_action":
            observation = request.get("data", {})
            check_request(observation, self.limits)
            actions = self.policy.get_action(observation)
            check_actions(actions)
            return actions
        if endpoint == "get_modality_config":
            return {name: {"__ModalityConfig_class__": True, "as_json": json.dumps(config)}
                    for name, config in self.policy.modality_config().items()}
        if endpoint == "get_metadata":
            return asdict(self.policy.get_metadata())
        raise ValueError(f"Unknown endpoint: {endpoint}")

    def run(self) -> None:
        self.running = True
        print(f"GR00T server listening on {self.endpoint} (requests up to {self.max_message_bytes / 1e6:g} MB, "
              f"{self.limits.max_batch} observations, {self.limits.max_pixels / 1e6:g} megapixels, frames up to "
              f"{self.limits.max_image_side} pixels a side; API token {'required' if self.api_token else 'not set'})", flush=True)
        while self.running:
            self.socket.send(self.handle(self.socket.recv()))
        self.socket.close(linger=1000)  # LINGER 0 could drop the last reply (kill's) before zmq has sent it
