#!/usr/bin/env python3
"""Small PyTorch checkpoints for sdflow's torch.save reader tests (tests/io/test_torch_checkpoint*.cpp)
and seeds for tools/fuzz.sh fuzz_torch_checkpoint. Made with torch.save itself, so the files are
what PyTorch writes; the hostile ones are edited copies.

  tensors.pth          OrderedDict of f32/f16/bf16/i64/i8/bool tensors, a transposed view and a slice
                       sharing one storage (offset + strides), an nn.Parameter, a scalar, an empty tensor
  nested.ckpt          {"state_dict": {...}, "global_step": 7, "epoch": 1}: the ".ckpt" shape
  single_key.pt        {"model": {...}}: ComfyUI takes the only dict value
  deflated.pth         tensors.pth re-zipped with deflate
  legacy.pt            torch.save(_use_new_zipfile_serialization=False): refused
  global.pth           a dict holding an argparse.Namespace: refused, naming the global
  short_storage.pth    tensors.pth with one storage file cut short: refused
  view_outside.pth     a tensor whose size reaches past its storage: refused

Values are fixed formulas the C++ test recomputes (see the comments there).
Usage: /usr/bin/python3 tools/goldens/make_torch_checkpoint_samples.py [--out DIR]
"""

import argparse
import collections
import io
import os
import pickle
import zipfile

import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def tensors():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    sd = collections.OrderedDict()
    sd["f32"] = base
    sd["f32_t"] = base.t()                    # same storage, strides (1, 4)
    sd["f32_row"] = base[1, 1:]               # same storage, offset 5
    sd["f16"] = torch.tensor([0.5, -1.0, 2.0, 65504.0], dtype=torch.float16)
    sd["bf16"] = torch.tensor([1.0, -2.0, 3.5], dtype=torch.bfloat16)
    sd["i64"] = torch.tensor([[1, -2], [3, 1 << 40]], dtype=torch.int64)
    sd["i8"] = torch.tensor([-128, 0, 127], dtype=torch.int8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["param"] = torch.nn.Parameter(torch.full((2, 2), 0.25))
    sd["scalar"] = torch.tensor(3.0)
    sd["empty"] = torch.zeros(0, 5)
    sd._metadata = collections.OrderedDict({"": {"version": 1}})  # what module.state_dict() carries
    return sd


def rezip(src, dst, edit=None, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if edit:
                data = edit(info.filename, data)
            zout.writestr(info.filename, data)


class _Storage:
    pass


class _Pickler(pickle.Pickler):
    """Writes a data.pkl as torch.save would, with a tensor record we choose."""

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, "0", "cpu", 4)
        return None


class _BadView:
    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, (_Storage(), 2, (3,), (1,), False, collections.OrderedDict()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "torch"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)

    torch.save(tensors(), p("tensors.pth"))
    torch.save({"state_dict": tensors(), "global_step": 7, "epoch": 1}, p("nested.ckpt"))
    torch.save({"model": tensors()}, p("single_key.pt"))
    rezip(p("tensors.pth"), p("deflated.pth"), compression=zipfile.ZIP_DEFLATED)
    torch.save(tensors(), p("legacy.pt"), _use_new_zipfile_serialization=False)
    import argparse as ap_module
    torch.save({"w": torch.ones(2), "args": ap_module.Namespace(lr=1)}, p("global.pth"))
    rezip(p("tensors.pth"), p("short_storage.pth"),
          edit=lambda name, data: data[:-4] if name.endswith("/data/0") else data)

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump({"w": _BadView()})
    with zipfile.ZipFile(p("view_outside.pth"), "w") as z:
        z.writestr("view_outside/data.pkl", buf.getvalue())
        z.writestr("view_outside/byteorder", "little")
        z.writestr("view_outside/data/0", torch.arange(4, dtype=torch.float32).numpy().tobytes())
    for name in sorted(os.listdir(out)):
        print(f"wrote {p(name)} ({os.path.getsize(p(name))} bytes)")


if __name__ == "__main__":
    main()
