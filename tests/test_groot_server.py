"""GR00TServer safety: loopback by default, who may `kill`, the message size cap, NaN/inf, CLI checks.

A fake policy stands in for the model, so no torch work runs. Servers listen on 127.0.0.1; two
tests bind 0.0.0.0 on a free port for a moment to check the warning and the kill rule.
"""

import contextlib
import inspect
import threading

import numpy as np
import pytest
import zmq

import groot_n15
from groot_n15 import GR00TClient, GR00TServer


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
def serving(**kwargs):
    """A server running in a thread; yields (server, connect), connect(**client kwargs) -> a client on it."""
    server = GR00TServer(FakePolicy(), port=kwargs.pop("port", 0), **kwargs)
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
            owner = connect(api_token=server.api_token)
            assert owner.ping()  # the loop is running ...
            server.running = False
            owner.ping()  # ... and leaves after this reply
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


# ----- message size --------------------------------------------------------------------------


def test_oversized_request_gets_an_error_reply_and_the_server_keeps_serving():
    with serving(max_message_bytes=100_000) as (server, connect):
        client = connect()
        big = observation() | {"video.front": np.zeros((2, 1, 100, 100, 3), np.uint8)}
        big["video.wrist"] = big["video.front"]  # 120 kB: over the soft cap, under the hard one
        with pytest.raises(RuntimeError, match=r"failed on 'get_action': request of [\d,]+ bytes is over this server's "
                                               r"limit of 100,000 bytes \(0\.1 MB\).*--max-message-mb"):
            client.get_action(big)
        assert server.policy.calls == 0  # rejected before decoding
        assert client.get_action(observation())["action.single_arm"].shape == (2, 16, 5)
        assert server.policy.calls == 1


def test_request_over_the_hard_cap_is_dropped_and_the_server_keeps_serving():
    with serving(max_message_bytes=100_000) as (server, connect):
        assert server.socket.getsockopt(zmq.MAXMSGSIZE) == 200_000  # the zmq backstop sits above the soft cap
        huge = observation() | {"video.front": np.zeros((2, 1, 200, 200, 3), np.uint8)}  # 240 kB: over both
        with pytest.raises(TimeoutError, match="no reply"):
            connect(timeout_s=0.5).get_action(huge)
        assert server.policy.calls == 0
        assert connect().get_action(observation())["action.single_arm"].shape == (2, 16, 5)


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


# ----- command line --------------------------------------------------------------------------


@pytest.fixture
def fake_serve(monkeypatch):
    """`groot_n15.py serve` with a fake model and a run() that only records the server."""
    servers = []
    monkeypatch.setattr(groot_n15.GR00TPolicy, "from_pretrained", classmethod(lambda cls, *args, **kwargs: FakePolicy()))
    monkeypatch.setattr(GR00TServer, "run", lambda self: servers.append(self))
    yield servers
    for server in servers:
        server.socket.close()


def test_cli_serves_on_loopback_by_default_with_the_size_limit(fake_serve, capsys):
    groot_n15.main(["serve", "checkpoint", "--port", "0"])
    assert fake_serve[-1].endpoint.startswith("tcp://127.0.0.1:")
    assert fake_serve[-1].max_message_bytes == 64_000_000 and isinstance(fake_serve[-1].policy, FakePolicy)
    assert "WARNING" not in capsys.readouterr().err
    groot_n15.main(["serve", "checkpoint", "--port", "0", "--host", "0.0.0.0", "--max-message-mb", "0.5"])
    assert fake_serve[-1].endpoint.startswith("tcp://0.0.0.0:") and fake_serve[-1].max_message_bytes == 500_000
    assert "WARNING" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        groot_n15.main(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default 127.0.0.1" in help_text and "--host 0.0.0.0" in help_text and "19.3 MB" in help_text


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "port 70000 is outside 0..65535"),
    (["--port", "-1"], "port -1 is outside 0..65535"),
    (["--port", "http"], "'http' is not a port number"),
    (["--max-message-mb", "0"], "positive, finite number of MB"),
    (["--max-message-mb", "-5"], "positive, finite number of MB"),
    (["--max-message-mb", "nan"], "positive, finite number of MB"),
    (["--max-message-mb", "inf"], "positive, finite number of MB"),
])
def test_cli_rejects_bad_port_and_message_size(fake_serve, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        groot_n15.main(["serve", "checkpoint", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert fake_serve == []  # nothing was served
