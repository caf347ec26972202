"""GR00TServer safety: loopback by default, who may `kill`, the API token, the message size cap, the
work caps and request types, NaN/inf, bad requests, an unreachable server, CLI checks.

A fake policy stands in for the model, so no torch work runs, except where abusive requests meet the
tiny random model of groot_fixtures. Servers listen on 127.0.0.1; two tests bind 0.0.0.0 on a free
port for a moment to check the warning and the kill rule.
"""

import contextlib
import copy
import inspect
import re
import socket
import threading
import time

import numpy as np
import pytest
import zmq

import groot_server
import serve_groot
from groot_fixtures import (  # noqa: F401 (fixtures: checkpoint_dir, tokenizer_dir, one_torch_thread)
    checkpoint_dir, free_port, one_torch_thread, tokenizer_dir,
)
from groot_policy import GR00TPolicy
from groot_server import GR00TClient, GR00TServer, RequestLimits


class FakePolicy:
    """Answers get_action with zero chunks and counts the calls that reach it."""

    def __init__(self):
        self.calls = 0

    def get_action(self, observation: dict) -> dict:
        self.calls += 1
        return {"action.single_arm": np.zeros((len(observation["state.single_arm"]), 16, 5), np.float32)}

    def modality_config(self) -> dict:
        return {"state": {"modality_keys": ["state.single_arm"], "delta_indices": [0]}}


def observation(batch: int = 2) -> dict:
    return {"video.front": np.zeros((batch, 1, 8, 8, 3), np.uint8), "state.single_arm": np.zeros((batch, 1, 5))}


@contextlib.contextmanager
def serving(policy=None, **kwargs):
    """A server (of a FakePolicy by default) running in a thread; yields (server, connect),
    connect(**client kwargs) -> a client on it."""
    server = GR00TServer(policy or FakePolicy(), port=kwargs.pop("port", 0), **kwargs)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    clients = []

    def connect(**client_kwargs) -> GR00TClient:
        clients.append(GR00TClient("127.0.0.1", server.port, **{"timeout_s": 5} | client_kwargs))
        return clients[-1]

    try:
        yield server, connect
    finally:
        if server.running:  # not killed: stop it without `kill`, which a network server may refuse
            assert connect(api_token=server.api_token).ping()  # the loop is running ...
            server.running = False
            # ... and leaves at its next check: this wakes it if it already waits for a request (if not, the ping times out)
            connect(api_token=server.api_token, timeout_s=0.5).ping()
        thread.join(timeout=5)
        for client in clients:
            client.close()
    assert not thread.is_alive()


# ----- where it listens ----------------------------------------------------------------------


def test_server_listens_on_loopback_by_default(capsys):
    assert inspect.signature(GR00TServer).parameters["host"].default == "127.0.0.1"
    server = GR00TServer(FakePolicy(), port=0)
    try:
        assert server.socket.getsockopt_string(zmq.LAST_ENDPOINT).startswith("tcp://127.0.0.1:")
        assert server.loopback
    finally:
        server.socket.close()
    assert capsys.readouterr().err == ""  # nothing to warn about


def test_network_server_without_token_warns_and_refuses_kill(capsys):
    with serving(host="0.0.0.0") as (server, connect):
        warning = capsys.readouterr().err
        assert "WARNING" in warning and "without an API token" in warning and "--api-token" in warning
        client = connect()
        with pytest.raises(RuntimeError, match=r"failed on 'kill': kill refused: .*no API token.*--api-token"):
            client.kill()
        assert client.ping()  # still serving
        assert client.get_action(observation())["action.single_arm"].shape == (2, 16, 5)


def test_network_server_with_token_kills_only_with_the_token(capsys):
    with serving(host="0.0.0.0", api_token="secret") as (server, connect):
        assert capsys.readouterr().err == ""  # a token: no warning
        for wrong in (None, "guess"):
            with pytest.raises(RuntimeError, match="Unauthorized: Invalid API token"):
                connect(api_token=wrong).kill()
        assert connect(api_token="secret").ping()
        connect(api_token="secret").kill()
        assert not server.running  # set before the reply; `serving` checks that the thread ends


def test_loopback_server_without_token_accepts_kill():
    with serving() as (server, connect):
        connect().kill()
        assert not server.running


def test_server_rejects_bad_settings():
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="max_message_bytes must be a positive integer"):
            GR00TServer(FakePolicy(), port=0, max_message_bytes=bad)
    with pytest.raises(ValueError, match="api_token must be a non-empty string"):
        GR00TServer(FakePolicy(), port=0, api_token="")


# ----- message size and what a connection may hold ----------------------------------------


def zmtp_connection(port: int) -> socket.socket:
    """A raw TCP connection that has done ZMTP 3.0's NULL handshake as a REQ peer: frames are then sent by
    hand, as an attacker would, without a zmq socket buffering anything on this side."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    ready = b"\x05READY" + b"\x0bSocket-Type" + (3).to_bytes(4, "big") + b"REQ"
    greeting = b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + bytes(32)
    connection.sendall(greeting + b"\x04" + bytes([len(ready)]) + ready)

    def receive(size: int) -> bytes:
        data = b""
        while len(data) < size:
            data += connection.recv(size - len(data))
        return data

    receive(64 + 1)  # the server's greeting and the flags of its READY: frames sent before it may be refused
    receive(receive(1)[0])  # the READY command itself
    return connection


def zmtp_request(payload: bytes) -> bytes:
    """A REQ message on the wire: an empty delimiter frame, then `payload` as one long frame."""
    return b"\x01\x00" + b"\x02" + len(payload).to_bytes(8, "big") + payload


def closed_by_server(connection: socket.socket, within_s: float) -> bool:
    connection.settimeout(within_s)
    try:
        while connection.recv(65536):  # nothing more comes from the server
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_frame_over_the_cap_is_dropped_at_its_header():
    """The server never buffers a frame larger than --max-message-mb: the connection closes as soon as the
    frame's size is read (six connections each sending 100 MB once held 590 MB this way)."""
    with serving(max_message_bytes=1_000_000) as (server, connect):
        over, under = zmtp_connection(server.port), zmtp_connection(server.port)
        try:
            over.sendall(b"\x01\x00" + b"\x02" + (1_000_001).to_bytes(8, "big"))  # the header only
            under.sendall(b"\x01\x00" + b"\x02" + (999_990).to_bytes(8, "big"))
            assert closed_by_server(over, within_s=2)
            assert not closed_by_server(under, within_s=0.5)  # a frame within the cap is awaited
        finally:
            over.close()
            under.close()
        big = observation() | {"video.front": np.zeros((2, 1, 300, 300, 3), np.uint8)}  # 540 kB of frames...
        big["video.wrist"] = big["video.front"]  # ...twice: over the cap
        with pytest.raises(TimeoutError, match=r"no reply.*This request was 1\.1 MB.*--max-message-mb"):
            connect(timeout_s=0.5).get_action(big)
        assert server.policy.calls == 0
        assert connect().get_action(observation())["action.single_arm"].shape == (2, 16, 5)  # still serving


class BlockingPolicy(FakePolicy):
    """A FakePolicy whose calls wait until `release` is set: a server busy with one request."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def get_action(self, observation: dict) -> dict:
        self.release.wait(timeout=30)
        return super().get_action(observation)


def test_a_connection_cannot_queue_requests_while_the_server_is_busy():
    """A REQ client sends one request at a time; a raw connection could pipeline hundreds of them
    (zmq's default queue holds 1000 messages per connection). The server reads at most one more."""
    policy = BlockingPolicy()
    with serving(policy, max_message_bytes=2_000_000) as (server, connect):
        request = zmtp_request(groot_server.pack({"endpoint": "get_action", "data": observation() | {"padding": bytes(1_000_000)}}))
        connection = zmtp_connection(server.port)
        connection.settimeout(2)
        accepted = 0
        try:
            for _ in range(60):  # 60 MB in all
                connection.sendall(request)
                accepted += len(request)
        except TimeoutError:
            pass  # the server stopped reading: the rest would wait in this process
        finally:
            policy.release.set()
            connection.close()
        connect().kill()  # answered once the server has worked through what it took; stopping it with a ping could race them
        # one request at the policy, one queued, one being read, and the kernel's socket buffers
        assert accepted < 25_000_000, f"the server took {accepted / 1e6:.0f} MB from one connection"


# ----- work per request, and what a request may hold -----------------------------------------


@pytest.fixture(scope="module")
def tiny_policy(checkpoint_dir, tokenizer_dir):
    """The tiny random GR00T N1.5 of groot_fixtures; noise="zero": an observation always gets the same chunk."""
    return GR00TPolicy.from_pretrained(checkpoint_dir, tokenizer=tokenizer_dir, dtype="float32", device="cpu", noise="zero")


def camera_observation(batch: int = 2, frames: int = 1, height: int = 72, width: int = 96) -> dict:
    """An observation with the tiny checkpoint's two cameras and two state keys."""
    images = np.zeros((batch, frames, height, width, 3), np.uint8)
    return {"video.front": images, "video.wrist": images, "state.single_arm": np.full((batch, 1, 5), 0.5),
            "state.gripper": np.zeros((batch, 1, 1)), "annotation.human.task_description": ["slide the paper"] * batch}


ABUSIVE_REQUESTS = {  # each made the server work for many seconds, answer NaN, or coerce what it was sent
    "800 tiny images": (camera_observation(batch=800, height=2, width=2), r"batch of 800 observations is outside this server's limit of 1 to 64"),
    "400 frames per camera": (camera_observation(batch=1, frames=400, height=2, width=2), r"'video\.front' has 400 frames per observation"),
    "NaN in a plain list": (camera_observation() | {"state.single_arm": [[[float("nan")] * 5]] * 2}, r"'state\.single_arm' must be a numpy array"),
    "float64 beyond float32": (camera_observation() | {"state.single_arm": np.full((2, 1, 5), 1e300)}, r"'state\.single_arm' holds 10 NaN or inf"),
    "float images": (camera_observation() | {"video.front": np.full((2, 1, 72, 96, 3), 300.0)}, r"'video\.front' must be uint8"),
}


def test_abusive_requests_are_refused_at_once_while_a_normal_client_is_served(tiny_policy):
    expected = tiny_policy.get_action(camera_observation())
    stop, outcomes = threading.Event(), {}
    with serving(tiny_policy) as (server, connect):
        def abuse(name: str, request: dict) -> None:
            client = connect(timeout_s=60)
            while not stop.is_set():
                try:
                    outcomes[name] = client.get_action(request)
                except RuntimeError as error:
                    outcomes[name] = error

        abusers = [threading.Thread(target=abuse, args=(name, request), daemon=True) for name, (request, _) in ABUSIVE_REQUESTS.items()]
        for thread in abusers:
            thread.start()
        time.sleep(0.5)  # every abuser has a request in
        try:
            served = connect(timeout_s=5).get_action(camera_observation())  # TimeoutError if the abuse blocks it
        finally:
            stop.set()
            for thread in abusers:
                thread.join(timeout=60)
    for key, chunk in expected.items():
        np.testing.assert_array_equal(served[key], chunk)
    for name, (_, message) in ABUSIVE_REQUESTS.items():
        assert isinstance(outcomes[name], RuntimeError), f"{name}: answered {outcomes[name]}"
        assert re.search(message, str(outcomes[name])), f"{name}: {outcomes[name]}"


@contextlib.contextmanager
def answering(policy, limits: RequestLimits):
    """A server that is not running: yields (policy, reply), reply(observation) -> its get_action answer."""
    server = GR00TServer(policy, port=0, limits=limits)
    try:
        yield policy, lambda data: groot_server.unpack(server.handle(groot_server.pack({"endpoint": "get_action", "data": data})))
    finally:
        server.socket.close()


SMALL_LIMITS = RequestLimits(max_batch=4, max_image_side=64, max_pixels=1000)  # observation() has 2 x 8 x 8 = 128 pixels


@pytest.mark.parametrize("change, message", [
    ({"video.front": np.zeros((5, 1, 8, 8, 3), np.uint8), "state.single_arm": np.zeros((5, 1, 5))},
     r"batch of 5 observations is outside this server's limit of 1 to 4 \(--max-batch\)"),
    ({"video.front": np.zeros((2, 1, 65, 8, 3), np.uint8)}, r"'video\.front' frames are 65x8 pixels.*2 to 64 pixels a side \(--max-image-side\)"),
    ({"video.front": np.zeros((2, 1, 1, 8, 3), np.uint8)}, r"'video\.front' frames are 1x8 pixels.*2 to 64 pixels a side"),
    ({"video.front": np.zeros((2, 1, 30, 30, 3), np.uint8)}, r"1,800 pixels.*limit of 1,000 \(--max-megapixels\)"),
    ({"video.front": np.zeros((2, 2, 8, 8, 3), np.uint8)}, r"'video\.front' has 2 frames per observation; GR00T N1\.5 takes 1"),
    ({"state.single_arm": np.zeros((2, 3, 5))}, r"'state\.single_arm' has 3 frames per observation"),
    ({"video.front": np.zeros((2, 1, 8, 8, 3))}, r"'video\.front' must be uint8 RGB frames \(B, 1, H, W, 3\), got float64 \(2, 1, 8, 8, 3\)"),
    ({"video.front": np.full((2, 1, 8, 8, 3), -1)}, r"'video\.front' must be uint8 RGB frames.*got int64"),
    ({"video.front": np.zeros((2, 1, 8, 8, 4), np.uint8)}, r"'video\.front' must be uint8 RGB frames.*\(2, 1, 8, 8, 4\)"),
    ({"video.front": np.zeros((2, 8, 8, 3), np.uint8)}, r"'video\.front' must be uint8 RGB frames \(B, 1, H, W, 3\)"),
    ({"video.front": [[[[[0, 0, 0]]]]] * 2}, r"'video\.front' must be a numpy array, got list"),
    ({"state.single_arm": [[[0.0] * 5]] * 2}, r"'state\.single_arm' must be a numpy array, got list"),
    ({"state.single_arm": np.full((2, 1, 5), "0.5")}, r"'state\.single_arm' must be a numeric array \(B, 1, D\), got <U3"),
    ({"state.single_arm": np.zeros((2, 1, 5), bool)}, r"'state\.single_arm' must be a numeric array.*got bool"),
    ({"state.single_arm": np.full((2, 1, 5), 1e300)}, r"'state\.single_arm' holds 10 NaN or inf value\(s\) as float32"),
    ({"state.single_arm": np.zeros((3, 1, 5))}, r"batch sizes differ between keys: \{'video\.front': 2, 'state\.single_arm': 3\}"),
    ({"annotation.human.task_description": [1, 2]}, r"'annotation\.human\.task_description' must be a string or 2 strings"),
    ({"annotation.human.task_description": ["push"]}, r"'annotation\.human\.task_description' must be a string or 2 strings"),
    ({"annotation.human.task_description": "x" * 1001}, r"instruction of 1,001 characters is over the limit of 1,000"),
])
def test_requests_beyond_the_limits_or_of_the_wrong_types_are_refused(change, message):
    with answering(FakePolicy(), SMALL_LIMITS) as (policy, reply):
        refused = reply(observation() | change)
        assert "error" in refused and re.search(message, refused["error"]), refused
        assert policy.calls == 0


def test_requests_within_the_limits_are_served_in_every_accepted_form():
    with answering(FakePolicy(), SMALL_LIMITS) as (policy, reply):
        accepted = [
            observation(batch=4),  # the largest batch
            observation() | {"video.front": np.zeros((2, 1, 20, 25, 3), np.uint8)},  # 1,000 pixels, 25 a side
            observation() | {"annotation.human.task_description": "push"},  # one instruction for all
            observation() | {"annotation.human.task_description": ["push", "pull"]},
            observation() | {"annotation.human.task_description": [["push"], ["pull"]]},  # Isaac's (B, 1) layout
            observation() | {"annotation.human.task_description": np.array(["push", "pull"])},
            observation() | {"state.single_arm": np.zeros((2, 1, 5), np.int16)},  # any numeric dtype
            {key: value[0] for key, value in observation().items()},  # one observation without the batch axis
        ]
        for data in accepted:
            assert "error" not in reply(data), reply(data)
        assert policy.calls == len(accepted)
        assert "get_action takes an observation dict, got list" in reply([1, 2, 3])["error"]


class NaNPolicy(FakePolicy):
    def get_action(self, observation: dict) -> dict:
        chunk = super().get_action(observation)["action.single_arm"]
        chunk[0, 3, 1] = np.nan
        return {"action.single_arm": chunk}


def test_nan_actions_from_the_model_are_an_error_reply():
    with serving(NaNPolicy()) as (server, connect):
        with pytest.raises(RuntimeError, match=r"the model answered 1 NaN or inf value\(s\) in 'action\.single_arm'"):
            connect().get_action(observation())


# ----- NaN and inf ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("key", ["state.single_arm", "state.gripper"])
def test_nan_or_inf_in_a_request_is_an_error_naming_the_key(bad, key):
    with serving() as (server, connect):
        client = connect()
        obs = observation() | {"state.gripper": np.zeros((2, 1, 1), np.float32)}
        obs[key] = obs[key].copy()
        obs[key][1, 0, 0] = bad
        with pytest.raises(RuntimeError, match=rf"127\.0\.0\.1:{server.port} failed on 'get_action': ValueError: "
                                               rf"observation '{key}' holds 1 NaN or inf value"):
            client.get_action(obs)
        assert server.policy.calls == 0  # the model never saw it
        assert client.get_action(observation())["action.single_arm"].shape == (2, 16, 5)  # and it still serves


def test_client_raises_the_server_error_with_address_and_endpoint():
    with serving() as (server, connect):
        with pytest.raises(RuntimeError, match=rf"GR00T server at 127\.0\.0\.1:{server.port} failed on 'reset': "
                                               r"ValueError: Unknown endpoint: reset"):
            connect().call("reset")



class MetadataPolicy(FakePolicy):
    """A policy whose get_metadata the server sends as it is."""

    def __init__(self, metadata):
        super().__init__()
        self.metadata = metadata

    def get_metadata(self):
        return self.metadata


def test_the_client_gets_the_servers_metadata_as_it_was(tiny_policy):
    sent = tiny_policy.get_metadata()
    with serving(MetadataPolicy(sent)) as (_, connect):
        received = connect().get_metadata()
    assert (received.embodiment_tag, received.video, received.language_key, received.action_horizon) == \
        (sent.embodiment_tag, sent.video, sent.language_key, sent.action_horizon)
    for kind in ("state", "action"):
        assert list(getattr(received, kind)) == list(getattr(sent, kind))  # the order is the concatenation order
        for key, statistics in getattr(sent, kind).items():
            for name, values in statistics.items():
                np.testing.assert_array_equal(getattr(received, kind)[key][name], values)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.video.update(front={"resolution": [100_000, 1]}), r"video\.front resolution must be \[width, height\]"),
    (lambda m: m.state["single_arm"].update(min=np.full(5, np.nan, np.float32)), r"state\.single_arm statistics must be finite"),
    (lambda m: setattr(m, "action_horizon", 10**9), r"its action_horizon must be a whole number from 1 to 1024"),
    (lambda m: setattr(m, "state", [1, 2]), r"its metadata is malformed"),
    (lambda m: setattr(m, "language_key", ["not", "a", "string"]), r"its language_key and joint_units must be short strings"),
])
def test_metadata_a_server_sends_is_checked_like_a_checkpoints_file(tiny_policy, change, message):
    metadata = copy.deepcopy(tiny_policy.get_metadata())
    change(metadata)
    with serving(MetadataPolicy(metadata)) as (server, connect):
        with pytest.raises(ValueError, match=rf"GR00T server at 127\.0\.0\.1:{server.port}: {message}"):
            connect().get_metadata()


@pytest.mark.parametrize("reply", [None, [1, 2], {"embodiment_tag": "new_embodiment"},
                                   {"embodiment_tag": "x", "video": {}, "state": {}, "action": {}, "run": "rm -rf"}])
def test_a_reply_that_is_not_metadata_is_refused(reply):
    with pytest.raises(ValueError, match=r"its metadata must be a dict of"):
        groot_server.GR00TMetadata.from_reply(reply)

# ----- API token, garbage, no server ---------------------------------------------------------


def test_server_checks_the_api_token_and_survives_bad_requests():
    server = GR00TServer(FakePolicy(), host="127.0.0.1", port=0, api_token="secret")
    try:
        def reply(request):
            return groot_server.unpack(server.handle(groot_server.pack(request)))

        assert reply({"endpoint": "ping"}) == {"error": "Unauthorized: Invalid API token"}
        assert reply({"endpoint": "ping", "api_token": "secret"})["status"] == "ok"
        assert "Unknown endpoint" in reply({"endpoint": "reset", "api_token": "secret"})["error"]
        assert "error" in groot_server.unpack(server.handle(b"\xc1 not msgpack"))  # garbage gets a reply too
    finally:
        server.socket.close()


def test_unreachable_server_times_out_with_a_clear_error():
    port = free_port()
    client = GR00TClient("127.0.0.1", port, timeout_s=0.5)
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=rf"127\.0\.0\.1:{port}.*serve_groot\.py CHECKPOINT"):
            client.get_action(observation(batch=1))
        assert time.monotonic() - start < 2.0
        assert not client.ping()  # the socket was recreated: a second call times out again, no hang, no state error
    finally:
        client.close()


# ----- command line --------------------------------------------------------------------------


@pytest.fixture
def fake_serve(monkeypatch):
    """`serve_groot.py` with a fake model and a run() that only records the server."""
    servers = []
    monkeypatch.delenv("GROOT_API_TOKEN", raising=False)
    monkeypatch.setattr(serve_groot.GR00TPolicy, "from_pretrained", classmethod(lambda cls, *args, **kwargs: FakePolicy()))
    monkeypatch.setattr(GR00TServer, "run", lambda self: servers.append(self))
    yield servers
    for server in servers:
        server.socket.close()


def test_cli_serves_on_loopback_by_default_with_the_size_limit(fake_serve, capsys):
    serve_groot.main(["checkpoint", "--port", "0"])
    assert fake_serve[-1].endpoint.startswith("tcp://127.0.0.1:")
    assert fake_serve[-1].max_message_bytes == 64_000_000 and isinstance(fake_serve[-1].policy, FakePolicy)
    assert "WARNING" not in capsys.readouterr().err
    serve_groot.main(["checkpoint", "--port", "0", "--host", "0.0.0.0", "--max-message-mb", "0.5"])
    assert fake_serve[-1].endpoint.startswith("tcp://0.0.0.0:") and fake_serve[-1].max_message_bytes == 500_000
    assert "WARNING" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        serve_groot.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default 127.0.0.1" in help_text and "--host 0.0.0.0" in help_text and "19.3 MB" in help_text


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "port 70000 is outside 0..65535"),
    (["--port", "-1"], "port -1 is outside 0..65535"),
    (["--port", "http"], "'http' is not a port number"),
    (["--max-message-mb", "0"], "--max-message-mb: must be a positive, finite number, got '0'"),
    (["--max-message-mb", "-5"], "--max-message-mb: must be a positive, finite number"),
    (["--max-message-mb", "nan"], "--max-message-mb: must be a positive, finite number"),
    (["--max-message-mb", "inf"], "--max-message-mb: must be a positive, finite number"),
    (["--max-batch", "0"], "--max-batch: must be a whole number from 1, got '0'"),
    (["--max-batch", "1.5"], "--max-batch: must be a whole number from 1"),
    (["--max-image-side", "1"], "--max-image-side: must be a whole number from 2"),
    (["--max-megapixels", "nan"], "--max-megapixels: must be a positive, finite number"),
    (["--max-megapixels", "0"], "--max-megapixels: must be a positive, finite number"),
    (["--api-token", ""], "--api-token must not be empty"),
])
def test_cli_rejects_bad_port_and_limits(fake_serve, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        serve_groot.main(["checkpoint", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert fake_serve == []  # nothing was served


def test_cli_bad_address_is_one_line_and_status_2(fake_serve, capsys):
    taken = zmq.Context.instance().socket(zmq.REP)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        for args, message in [(["--port", str(port)], rf"cannot listen on tcp://127\.0\.0\.1:{port} \(Address already in use\)"),
                              (["--host", "1.2.3.4.5"], r"cannot listen on tcp://1\.2\.3\.4\.5:5555 \(No such device\)")]:
            with pytest.raises(SystemExit) as exit_info:
                serve_groot.main(["checkpoint", *args])
            err = capsys.readouterr().err
            assert exit_info.value.code == 2 and re.fullmatch(rf"error: {message}.*--port.*--host.*\n", err), err
    finally:
        taken.close()
    assert fake_serve == []


def test_cli_missing_checkpoint_is_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        serve_groot.main(["no/such/checkpoint/dir", "--port", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "is not a directory" in err


def test_cli_takes_the_api_token_from_the_environment(fake_serve, capsys, monkeypatch):
    monkeypatch.setenv("GROOT_API_TOKEN", "from-env")
    serve_groot.main(["checkpoint", "--port", "0"])
    assert fake_serve[-1].api_token == "from-env"
    serve_groot.main(["checkpoint", "--port", "0", "--api-token", "from-flag"])  # the flag, when given, wins
    assert fake_serve[-1].api_token == "from-flag"
    monkeypatch.setenv("GROOT_API_TOKEN", "")
    serve_groot.main(["checkpoint", "--port", "0"])
    assert fake_serve[-1].api_token is None  # empty: no token, as for the clients
    with pytest.raises(SystemExit):
        serve_groot.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "visible to other users" in help_text and "GROOT_API_TOKEN" in help_text
