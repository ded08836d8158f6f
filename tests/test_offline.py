"""The offline guarantee: with the Hugging Face offline switches on, a whole pipeline run with its evaluation stage opens no
network connection. A `sitecustomize` module wraps `socket.getaddrinfo` and `socket.socket.connect` in the child process,
records every attempt at an internet address, and refuses it."""
import json, os, subprocess, sys

GUARD = '''
import json, os, socket
_log = os.environ["TOKCLEAN_SOCKET_LOG"]
def _record(kind, target):
    with open(_log, "a") as f: f.write(json.dumps([kind, repr(target)]) + "\\n")
    raise OSError(f"network use blocked by the test: {kind} {target!r}")
_getaddrinfo, _connect = socket.getaddrinfo, socket.socket.connect
def getaddrinfo(host, *a, **k):
    if host not in (None, "localhost", "127.0.0.1", "::1"): _record("getaddrinfo", host)
    return _getaddrinfo(host, *a, **k)
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"): _record("connect", address)
    return _connect(self, address)
socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
'''


def test_pipeline_and_eval_open_no_connection(tmp_path):
    (tmp_path / "guard").mkdir()
    (tmp_path / "guard" / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "sockets.jsonl"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'guard'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "TOKCLEAN_SOCKET_LOG": str(log), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "tokclean", "run", "fixed", "--preset", "tiny", "--set", f"run.out_dir={tmp_path}",
                           "--set", f"score.cache_dir={tmp_path}/scores", "--set", "eval.enabled=true", "--set", "eval.quick_n=2",
                           "--set", "eval.tasks=boolq,tydiqa,mmlu"], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tmp_path / "tiny-fixed-s42" / "manifest.json").read_text())
    assert manifest["stages"]["eval"]["questions"] == {"boolq": 2, "tydiqa": 2, "mmlu": 2}
    assert not log.exists(), f"network attempts: {log.read_text()}"
    probe = subprocess.run([sys.executable, "-c", "import socket; socket.getaddrinfo('huggingface.co', 443)"], env=env,
                           capture_output=True, text=True)
    assert probe.returncode != 0 and log.exists(), "the guard itself must catch a lookup"
