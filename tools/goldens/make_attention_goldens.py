#!/usr/bin/env python3
"""Golden data for sdflow's attention kernels, computed by ComfyUI's own functions.

    /usr/bin/python3 tools/goldens/make_attention_goldens.py --comfy third_party_ref/ComfyUI \
        [--out tests/data/attention]

Runs comfy.ldm.modules.attention.attention_basic, attention_split and attention_sub_quad (which
calls sub_quadratic_attention.efficient_dot_product_attention) on random q, k, v on the CPU.
model_management.get_free_memory is replaced by a fixed figure per case, so the chunking each
function picks is reproducible; the chunk sizes it really used are recorded (by watching the
einsum / efficient_dot_product_attention calls) and the C++ test checks its own plan against
them. Inputs are fp16-representable and stored as fp16; bf16 cases run in bf16 (the CPU of torch
1.13 has no fp16 matmul) and store their inputs as float32. Outputs are float32.

Writes into --out:
  attention_goldens.safetensors  <case>.q/.k/.v/[.mask] inputs and <case>.<fn> outputs
  attention_goldens.json         the cases (heads, dtype, attn_precision, free memory) and the
                                 chunk sizes ComfyUI chose, plus the versions used
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

from make_cfg_goldens import _StubFinder, write_safetensors  # noqa: E402

MiB = 1024 * 1024

# Token counts, heads, dim_head, dtype, attn_precision (SD2's request), the free-memory figure and
# an optional mask. The small figures make split slice the queries and sub-quad chunk the keys
# (sqrt(tokens)) and, past 512 tokens, the queries; 64 GiB gives split one step and sub-quad its
# unchunked fast path; 101 tokens do not divide by split's step count (then it does not slice).
CASES = [
    dict(name="self_small_mem", batch=1, nq=520, nk=520, heads=2, dim=8, dtype="float32", prec=None, free=1 * MiB),
    dict(name="self_big_mem", batch=2, nq=128, nk=128, heads=2, dim=8, dtype="float32", prec=None, free=64 << 30),
    dict(name="cross_small_mem", batch=1, nq=520, nk=77, heads=2, dim=8, dtype="float32", prec=None,
         free=256 * 1024),
    dict(name="odd_tokens", batch=2, nq=101, nk=45, heads=3, dim=8, dtype="float32", prec=None, free=64 * 1024),
    dict(name="bf16", batch=2, nq=200, nk=200, heads=2, dim=8, dtype="bfloat16", prec=None, free=256 * 1024),
    dict(name="bf16_upcast", batch=2, nq=200, nk=200, heads=2, dim=8, dtype="bfloat16", prec="float32",
         free=256 * 1024),
    dict(name="key_mask", batch=2, nq=128, nk=77, heads=2, dim=8, dtype="float32", prec=None, free=128 * 1024,
         mask="keys"),
    dict(name="full_mask", batch=2, nq=96, nk=96, heads=2, dim=8, dtype="float32", prec=None, free=64 * 1024,
         mask="full"),
]


def import_comfy(comfy_dir):
    import types
    import torch
    sys.path.insert(0, os.path.abspath(comfy_dir))
    sys.meta_path.append(_StubFinder())
    for name, dt in (("float8_e4m3fn", torch.qint8), ("float8_e5m2", torch.quint8),
                     ("float8_e8m0fnu", torch.qint32), ("float8_e4m3fnuz", torch.quint4x2),
                     ("float8_e5m2fnuz", torch.complex32)):
        if not hasattr(torch, name):
            setattr(torch, name, dt)
    if not hasattr(torch.Tensor, "nbytes"):
        torch.Tensor.nbytes = property(lambda self: self.numel() * self.element_size())
    if not hasattr(torch, "compiler"):
        torch.compiler = types.SimpleNamespace(is_compiling=lambda: False, disable=lambda *a, **k: (lambda f: f))
    import comfy.options
    comfy.options.enable_args_parsing()
    saved, sys.argv = sys.argv, [sys.argv[0], "--cpu"]
    try:
        import comfy.model_management as mm
        import comfy.ldm.modules.attention as attn
    finally:
        sys.argv = saved
    # sub-quad calls baddbmm(torch.empty(1, 1, 1), q, k, beta=0), meaning "ignore the input";
    # torch 1.13's small-matrix CPU kernel then reads its own uninitialised result buffer and
    # NaNs appear now and then. beta=1 on zeros is the same sum without that read.
    import types as _types
    import comfy.ldm.modules.sub_quadratic_attention as sq
    real_baddbmm = torch.baddbmm

    def baddbmm(inp, b1, b2, *, beta=1, alpha=1):
        if beta == 0:
            return real_baddbmm(torch.zeros_like(inp), b1, b2, beta=1, alpha=alpha)
        return real_baddbmm(inp, b1, b2, beta=beta, alpha=alpha)

    sq.torch = _types.SimpleNamespace(**{n: getattr(torch, n) for n in dir(torch) if not n.startswith("__")})
    sq.torch.baddbmm = baddbmm
    version = "unknown"
    try:
        import comfyui_version
        version = comfyui_version.__version__
    except ImportError:
        pass
    return mm, attn, version


class Recorder:
    """Watches the calls that reveal the chunking ComfyUI chose."""

    def __init__(self, attn):
        import torch
        self.attn = attn
        self.split_slices = []
        self.sub_quad = []
        real_einsum = torch.einsum
        real_edpa = attn.efficient_dot_product_attention

        def einsum(eq, *ops):
            if eq == "b i d, b j d -> b i j":
                self.split_slices.append(int(ops[0].shape[1]))
            return real_einsum(eq, *ops)

        def edpa(query, key_t, value, query_chunk_size=1024, kv_chunk_size=None, kv_chunk_size_min=None, **kw):
            import math
            k_tokens = key_t.shape[2]
            kv = min(kv_chunk_size or int(math.sqrt(k_tokens)), k_tokens)
            self.sub_quad.append(dict(query_chunk=int(query_chunk_size), kv_chunk=int(kv),
                                      upcast=bool(kw.get("upcast_attention", False))))
            return real_edpa(query, key_t, value, query_chunk_size=query_chunk_size, kv_chunk_size=kv_chunk_size,
                             kv_chunk_size_min=kv_chunk_size_min, **kw)

        attn.einsum = einsum
        attn.efficient_dot_product_attention = edpa

    def reset(self):
        self.split_slices = []
        self.sub_quad = []


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfy", required=True, help="ComfyUI checkout root (the folder holding comfy/)")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "attention"))
    ap.add_argument("--seed", type=int, default=4321)
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)
    mm, attn, version = import_comfy(args.comfy)
    rec = Recorder(attn)
    g = torch.Generator().manual_seed(args.seed)

    tensors, cases = {}, []
    for c in CASES:
        dtype = getattr(torch, c["dtype"])
        width = c["heads"] * c["dim"]
        B = c["batch"]

        def rand(*shape, scale=1.0):  # fp16-representable, so fp32 inputs are stored in half the bytes
            return (torch.randn(shape, generator=g) * scale).half().float().to(dtype)

        q = rand(B, c["nq"], width)
        k = rand(B, c["nk"], width, scale=1.5)
        v = rand(B, c["nk"], width)
        mask = None
        if c.get("mask") == "keys":  # per-key additive mask, one row per batch item: [B, 1, 1, Nk]
            mask = torch.zeros((B, 1, 1, c["nk"]))
            mask[0, ..., 60:] = -30.0
            mask[1] = -3.0 * torch.rand((1, 1, c["nk"]), generator=g)
        elif c.get("mask") == "full":  # a different additive bias for every query: [Nq, Nk]
            mask = -4.0 * torch.rand((c["nq"], c["nk"]), generator=g)
        if mask is not None:
            mask = mask.to(dtype)
        prec = getattr(torch, c["prec"]) if c["prec"] else None
        free = c["free"]
        mm.get_free_memory = lambda dev=None, torch_free_too=False, free=free: (free, free) if torch_free_too else free

        record = dict(c)
        for fn_name in ("basic", "split", "sub_quad"):
            fn = getattr(attn, "attention_" + fn_name)
            rec.reset()
            with torch.no_grad():
                out = fn(q, k, v, c["heads"], mask=mask, attn_precision=prec)
            assert out.dtype == dtype, (fn_name, out.dtype)
            assert torch.isfinite(out).all(), (c["name"], fn_name)
            tensors[f"{c['name']}.{fn_name}"] = out.float().contiguous()
            if fn_name == "split":
                record["split_slice"] = rec.split_slices[0]
                record["split_calls"] = len(rec.split_slices)
            if fn_name == "sub_quad":
                record.update({"sub_quad_" + k2: v2 for k2, v2 in rec.sub_quad[0].items()})
        ref = tensors[f"{c['name']}.basic"]
        for fn_name in ("split", "sub_quad"):
            d = (tensors[f"{c['name']}.{fn_name}"] - ref).abs().max().item()
            print(f"{c['name']}: {fn_name} vs basic max |diff| {d:.3g}")
        store = torch.float16 if dtype == torch.float32 else torch.float32  # both exact
        for key, t in (("q", q), ("k", k), ("v", v)):
            tensors[f"{c['name']}.{key}"] = t.to(store).contiguous()
        if mask is not None:
            tensors[f"{c['name']}.mask"] = mask.float().contiguous()
        cases.append(record)
        print(f"{c['name']}: split slice {record['split_slice']} ({record['split_calls']} slices), sub-quad "
              f"query chunk {record['sub_quad_query_chunk']}, kv chunk {record['sub_quad_kv_chunk']}")

    os.makedirs(args.out, exist_ok=True)
    meta = {"comfyui_version": version, "torch_version": torch.__version__, "seed": str(args.seed)}
    spath = os.path.join(args.out, "attention_goldens.safetensors")
    write_safetensors(spath, tensors, meta)
    with open(os.path.join(args.out, "attention_goldens.json"), "w") as f:
        json.dump({"meta": meta, "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"wrote {spath} ({os.path.getsize(spath) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
