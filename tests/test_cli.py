"""The `eslchan` command as users run it: real processes, real ports, real signals."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)

ACCOUNT = "0123456789abcdef0123456789abcdef"  # the account of `eslchan simulate`'s demo calls


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "eslchan", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def call(url: str, method: str = "GET", body: dict | None = None, token: str | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)
    except OSError:
        return None, None


def until(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"not within {timeout}s: {predicate}")


def write_config(path: Path, esl_port: int, http_port: int, api_key: str) -> None:
    path.write_text(
        f"""
[http]
listen = "127.0.0.1:{http_port}"
drain_seconds = 2.0
health_details = true
[auth]
signing_key = "{'s' * 32}"
[[nodes]]
name = "sim1"
host = "127.0.0.1"
port = {esl_port}
password_env = "TEST_ESL_PASSWORD"
[link]
backoff_initial = 0.1
backoff_max = 1.0
[[accounts]]
id = "{ACCOUNT}"
name = "Demo"
api_key = "{api_key}"
"""
    )


@pytest.fixture
def simulate():
    esl_port = free_port()
    proc = spawn("simulate", "--listen", f"127.0.0.1:{esl_port}", "--password", "pw",
                 "--calls", "3", "--speed", "5")
    yield esl_port
    proc.terminate()
    proc.wait(10)


def test_serve_sees_the_calls_of_simulate_and_reloads_keys_on_sighup(simulate, tmp_path):
    http_port = free_port()
    config = tmp_path / "eslchan.toml"
    write_config(config, simulate, http_port, "first-key-0123456789")
    daemon = spawn("serve", "--config", str(config), env={"TEST_ESL_PASSWORD": "pw"})
    base = f"http://127.0.0.1:{http_port}"
    try:
        until(lambda: call(base + "/health")[0] == 200)
        status, answer = call(base + "/v2/api_auth", "PUT", {"data": {"api_key": "first-key-0123456789"}})
        assert status == 201
        token = answer["auth_token"]
        until(lambda: (call(base + f"/v2/accounts/{ACCOUNT}/channels", token=token)[1] or {}).get("data"))

        write_config(config, simulate, http_port, "second-key-0123456789")
        daemon.send_signal(signal.SIGHUP)
        until(lambda: call(base + "/v2/api_auth", "PUT",
                           {"data": {"api_key": "second-key-0123456789"}})[0] == 201)
        assert call(base + "/v2/api_auth", "PUT", {"data": {"api_key": "first-key-0123456789"}})[0] == 401
        health = call(base + "/health")[1]["data"]
        assert health["nodes"]["sim1"]["reconnects"] == 0  # the ESL link stayed up through the reload
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    assert "first-key" not in daemon.stderr.read()  # secrets never logged


def test_serve_refuses_a_bad_config_naming_the_key(tmp_path):
    config = tmp_path / "eslchan.toml"
    write_config(config, 8021, free_port(), "k" * 20)
    config.write_text(config.read_text().replace("drain_seconds", "drain_secs"))
    proc = spawn("serve", "--config", str(config), env={"TEST_ESL_PASSWORD": "pw"})
    assert proc.wait(20) == 2
    assert "http.drain_secs: unknown key" in proc.stderr.read()


def test_demo_prints_curl_commands_that_work_as_printed():
    if not Path("/usr/bin/curl").exists():
        pytest.skip("curl is not installed")
    http_port = free_port()
    demo = spawn("demo", "--listen", f"127.0.0.1:{http_port}", "--esl-port", "0", "--calls", "3")
    try:
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if "Stop with Ctrl-C" in line:
                break
        text = "".join(lines)
        commands = re.findall(r"^  (curl .*?)(?<!\\)$", text.replace("\\\n", " "), re.M)
        assert len(commands) >= 5, text
        listing = next(c for c in commands if c.endswith("/channels") and "X-Auth-Token" in c)

        def has_calls():
            out = subprocess.run(["bash", "-c", listing], capture_output=True, text=True, timeout=10).stdout
            return json.loads(out)["data"]

        until(has_calls)
        for command in commands:
            out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=10)
            assert out.returncode == 0 and out.stdout, (command, out.stderr)
            if "openapi" not in command and "text/csv" not in command:
                assert json.loads(out.stdout)["status"] == "success", (command, out.stdout)
    finally:
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(15) == 0


def test_demo_says_so_when_its_http_port_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = spawn("demo", "--listen", f"127.0.0.1:{port}", "--esl-port", "0")
        assert demo.wait(20) == 1
        assert f"cannot listen on 127.0.0.1:{port}" in demo.stderr.read()


def test_serve_says_so_when_its_http_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "eslchan.toml"
        write_config(config, free_port(), port, "k" * 20)
        proc = spawn("serve", "--config", str(config), env={"TEST_ESL_PASSWORD": "pw"})
        assert proc.wait(20) == 1
        err = proc.stderr.read()
        assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


def test_simulate_can_load_more_modules_than_the_recorded_server():
    port = free_port()
    proc = spawn("simulate", "--listen", f"127.0.0.1:{port}", "--calls", "0",
                 "--load", "mod_flite", "--load", "mod_soundtouch", "--sound-files")
    try:
        def answers(command: str) -> str | None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(f"auth ClueCon\n\napi {command}\n\n".encode())
                    data = b""
                    while not data.endswith((b"true", b"false")):
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    return data.decode()
            except OSError:
                return None

        assert until(lambda: answers("module_exists mod_flite")).endswith("true")
        assert answers("module_exists mod_soundtouch").endswith("true")
        assert answers("module_exists mod_say_de").endswith("false")
    finally:
        proc.terminate()
        proc.wait(10)
    bad = spawn("simulate", "--load", "mod_nonsense")
    assert bad.wait(10) == 2 and "invalid choice" in bad.stderr.read()


def test_simulate_registers_phones_and_gateways_as_told():
    """As on a real directory, user/X rings only a registered phone; --register and --gateway
    say which, and the demo parties' phones are registered."""
    port = free_port()
    proc = spawn("simulate", "--listen", f"127.0.0.1:{port}", "--calls", "0", "--speed", "20",
                 "--register", "1009", "--register", "1010=busy", "--gateway", "carrier1")
    try:
        def originate(dial: str) -> str | None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(f"auth ClueCon\n\napi originate {dial} &park\n\n".encode())
                    data = b""
                    while b"+OK " not in data.split(b"accepted", 1)[-1] and b"-ERR" not in data:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    return data.decode().rsplit("\n\n", 1)[-1]
            except OSError:
                return None

        assert until(lambda: originate("user/1009")).startswith("+OK")
        assert originate("user/1001").startswith("+OK")  # a demo party
        assert originate("user/1010").startswith("-ERR USER_BUSY")
        assert originate("user/7101").startswith("-ERR USER_NOT_REGISTERED")
        assert originate("sofia/gateway/carrier1/5551234").startswith("+OK")
        assert originate("sofia/gateway/carrier2/5551234").startswith("-ERR INVALID_GATEWAY")
    finally:
        proc.terminate()
        proc.wait(10)
    bad = spawn("simulate", "--register", "1009=sometimes")
    assert bad.wait(10) == 2 and "USER or USER=one of" in bad.stderr.read()
