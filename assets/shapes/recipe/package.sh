#!/usr/bin/env bash
# Copies a model trained by train.sh into assets/shapes (weights, config, tokenizer, ITC heads)
# with the first held-out images as examples.  Usage: package.sh WORK_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:?usage: package.sh WORK_DIR}
cp "$work/stage2/model/"{model.safetensors,config.json,tokenizer.model,itc.safetensors} "$here/"
mkdir -p "$here/examples"
python3 - "$work" "$here/examples" <<'PY'
import json, shutil, sys
work, out = sys.argv[1], sys.argv[2]
val = json.load(open(f"{work}/data/val.json"))[:6]
records = []
for i, r in enumerate(val):
    name = f"shapes-{i}.png"
    shutil.copy(f"{work}/data/{r['img']}", f"{out}/{name}")
    records.append({"img": name, "prompt": r["prompt"], "label": r["label"]})
json.dump(records, open(f"{out}/examples.json", "w"), indent=2)
PY
