#!/usr/bin/env python3
"""Writes a VisualGLM checkpoint in the HF release's layout with random fp16 values, without
torch: `pytorch_model-0000k-of-0000n.bin` shards in torch's zip format (a protocol-2 pickle of
`_rebuild_tensor_v2` records with persistent storage ids, one stored entry per storage), the
`pytorch_model.bin.index.json` and `config.json`. `lm_head.weight` shares the word
embeddings' storage, as `torch.save` writes tied weights.

Usage (numpy only):
    cargo run -q --example checkpoint_layout > /tmp/layout.json       # full size
    python3 bench/load/make_torch_checkpoint.py /tmp/layout.json /tmp/visualglm-6b-random
"""
import argparse
import collections
import io
import json
import os
import pickle
import sys
import types
import zipfile

import numpy as np

# Stand-ins for the two torch globals a state-dict pickle names; pickle records them by
# module and name (`torch._utils._rebuild_tensor_v2`, `torch.HalfStorage`), as torch does.
torch_mod = types.ModuleType("torch")
utils_mod = types.ModuleType("torch._utils")
sys.modules.setdefault("torch", torch_mod)
sys.modules.setdefault("torch._utils", utils_mod)


class HalfStorage:
    pass


HalfStorage.__module__ = "torch"
torch_mod.HalfStorage = HalfStorage


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


_rebuild_tensor_v2.__module__ = "torch._utils"
utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2


class Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class TensorRecord:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, tuple(shape)

    def __reduce__(self):
        stride, acc = [], 1
        for d in reversed(self.shape):
            stride.append(acc)
            acc *= d
        args = (self.storage, 0, self.shape, tuple(reversed(stride)), False,
                collections.OrderedDict())
        return (_rebuild_tensor_v2, args)


class StatePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", HalfStorage, obj.key, "cpu", obj.numel)
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("layout", help="JSON from `cargo run --example checkpoint_layout`")
    ap.add_argument("out", help="output directory")
    ap.add_argument("--shards", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    layout = json.load(open(args.layout))
    params = [(n, s) for n, s in layout["params"] if n != "lm_head.weight"]
    tie = any(n == "lm_head.weight" for n, _ in layout["params"])
    total = sum(int(np.prod(s)) for _, s in params)
    per_shard = total / args.shards
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    weight_map, shard, done, i = {}, [], 0, 0
    groups = []
    for name, shape in params:
        shard.append((name, shape))
        done += int(np.prod(shape))
        if done >= per_shard * (len(groups) + 1) and len(groups) < args.shards - 1:
            groups.append(shard)
            shard = []
    groups.append(shard)
    n = len(groups)
    written = 0
    for k, group in enumerate(groups, 1):
        fname = f"pytorch_model-{k:05d}-of-{n:05d}.bin"
        state = collections.OrderedDict()
        storages = []
        for key, (name, shape) in enumerate(group):
            numel = int(np.prod(shape))
            st = Storage(str(key), numel)
            storages.append((st, shape))
            state[name] = TensorRecord(st, shape)
            weight_map[name] = fname
            if tie and name == "transformer.word_embeddings.weight":
                state["lm_head.weight"] = TensorRecord(st, shape)
                weight_map["lm_head.weight"] = fname
        path = os.path.join(args.out, fname)
        with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            buf = io.BytesIO()
            StatePickler(buf, protocol=2).dump(state)
            z.writestr("archive/data.pkl", buf.getvalue())
            for st, shape in storages:
                values = rng.standard_normal(st.numel, dtype=np.float32)
                values *= 0.02
                with z.open(f"archive/data/{st.key}", "w", force_zip64=True) as f:
                    f.write(values.astype(np.float16).tobytes())
                del values
                written += st.numel
            z.writestr("archive/version", "3\n")
        os.replace(path + ".tmp", path)
        print(f"{fname}: {len(group)} tensors, {written / total:.0%}", flush=True)
    index = {"metadata": {"total_size": total * 2}, "weight_map": weight_map}
    with open(os.path.join(args.out, "pytorch_model.bin.index.json"), "w") as f:
        json.dump(index, f, indent=1)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(layout["config"], f, indent=1)


if __name__ == "__main__":
    main()
