#!/usr/bin/env bash
# install.sh PIECE_DIR : after the last piece (carried as PIECE_DIR, e.g. .whl/vllm/c3), join the pieces, unpack vLLM and install its missing requirements
# from the carried wheels (resolved against what is installed), then put the tree after site-packages.
set -euo pipefail
s=$HOME/vstage; n=$(cat "$1/TREE_BYTES")
cat $(ls $s/part* | sort -V) > $s/blob
head -c "$n" $s/blob > $s/tree.tar.xz; tail -c +$((n + 1)) $s/blob > $s/deps.tar; rm -f $s/blob
mkdir -p $s/site $s/wheels; tar -C $s/site -xJf $s/tree.tar.xz; tar -C $s/wheels -xf $s/deps.tar
# --no-deps: the wheels are the resolved set less what the machine has (a pin like numpy<2.4 must not downgrade it)
rm -f $s/wheels/setuptools-*.whl $s/wheels/six-*.whl  # the machine's own serve (pieces packed before the skip)
python3 -m pip install -q --no-index --no-deps $s/wheels/*.whl
echo $s/site > "$(python3 -c 'import site; print(site.getsitepackages()[0])')/zz_vllm_stage.pth"
python3 -c "import torch, vllm; print('vllm', vllm.__version__, 'on torch', torch.__version__)"
