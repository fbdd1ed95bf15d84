#!/usr/bin/env bash
# pack.sh DIR : build, on a machine that reaches PyPI, vLLM 0.22.1 for a GPU runner that has no network and
# takes at most ~64 MiB per upload. vLLM 0.22.1 pins torch==2.11.0 / torchvision 0.26.0 / torchaudio 2.11.0,
# which is what the GPU machines already have. Leaves DIR/c0..cN, one ~46 MB piece each.
# Left out on purpose (not needed for dense models on Hopper): the FA2 and MoE kernels, vllm-rs, flashinfer
# and the other optional kernel packages, numba, opencv; and every package the GPU machines already have
# (torch and its CUDA libraries, triton, numpy, transformers and the tokenizers, setuptools: the
# resolver here picks a setuptools newer than vLLM's <81 pin, without pkg_resources). Put DIR under an ignored
# folder of the repo (.whl/). Each piece folder also holds TREE_BYTES and requirements-missing.txt, so the
# last one carried can install.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); dir=$(mkdir -p "$1" && cd "$1" && pwd); tmp=$(mktemp -d)
python3 -m venv "$tmp/venv" && "$tmp/venv/bin/pip" install -q --upgrade pip   # a pip that resolves from metadata alone
pip="$tmp/venv/bin/pip"
plat="--only-binary=:all: --python-version 3.12 --implementation cp"
for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux_2_31 manylinux_2_34 manylinux_2_5 manylinux1; do plat="$plat --platform ${p}_x86_64"; done
plat="$plat --platform any"
"$pip" download -q --no-deps $plat -d "$tmp/v" vllm==0.22.1
# Resolve the requirements without downloading (wheel metadata), then fetch only what the machines lack.
"$pip" install -q --dry-run --ignore-installed $plat --target "$tmp/none" --report "$tmp/r.json" -r "$here/requirements-missing.txt"
python3 - "$tmp/r.json" > "$tmp/want.txt" <<'PY'
import json, re, sys
skip = re.compile(r"^(torch|torchvision|torchaudio|nvidia-.*|triton|numpy|transformers|cuda-.*|tokenizers|safetensors|"
                  r"huggingface-hub|sentencepiece|tiktoken|hf-xet|networkx|sympy|mpmath|jinja2|markupsafe|fsspec|setuptools|six)$")
for item in json.load(open(sys.argv[1]))["install"]:
    name = re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower()
    if not skip.match(name):
        print(f"{name}=={item['metadata']['version']}")
PY
"$pip" download -q --no-deps $plat -d "$tmp/keep" -r "$tmp/want.txt"
mkdir -p "$tmp/tree" && (cd "$tmp/tree" && python3 -m zipfile -e "$tmp"/v/vllm-*.whl . )
rm -f "$tmp"/tree/vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so "$tmp"/tree/vllm/_moe_C.abi3.so "$tmp"/tree/vllm/vllm-rs \
      "$tmp"/tree/vllm/third_party/deep_gemm/_C.cpython-31[0134]-*.so
tar -C "$tmp/tree" -cf - . | xz -T2 -6 > "$tmp/tree.tar.xz"
tar -C "$tmp/keep" -cf "$tmp/deps.tar" .
stat -c %s "$tmp/tree.tar.xz" > "$dir/TREE_BYTES"
cat "$tmp/tree.tar.xz" "$tmp/deps.tar" | split -b 46000000 -d -a 1 - "$tmp/part"
rm -rf "$dir"/c[0-9]; i=0
for p in "$tmp"/part*; do mkdir -p "$dir/c$i"; mv "$p" "$dir/c$i/part"; i=$((i+1)); done
for c in "$dir"/c[0-9]; do cp "$here/requirements-missing.txt" "$dir/TREE_BYTES" "$c/"; done
echo "$i pieces in $dir ($(wc -l < "$tmp/want.txt") wheels; tree $(cat "$dir/TREE_BYTES") bytes)"; rm -rf "$tmp"
