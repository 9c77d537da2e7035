#!/usr/bin/env python3
"""Golden CLIP tokens from ComfyUI's own tokenizers, for tests/tokenizer/test_comfy_goldens.cpp.

Runs comfy.sd1_clip.SDTokenizer (SD1.x / SDXL CLIP-L) and comfy.sdxl_clip.SDXLClipGTokenizer
(SDXL CLIP-G) on a fixed list of tricky prompts plus seeded random ones, and writes

  tests/data/tokenizer/comfy_tokens.json = {
    "meta":  {versions, which CLIPTokenizer transformers gave, the embedding fixtures, ...},
    "cases": [{"prompt": str,
               "clip_l": [[[id, weight], ...] per chunk],   # embedding slot: [{"embedding": stem, "row": r}, w]
               "clip_g": same,
               "clip_l_no_embeddings": same, only for prompts containing "embedding:"
                                        (tokenizer built without an embeddings folder),
               "hf_ids": tokenizer(prompt)["input_ids"] of the underlying HF tokenizer,
               "error": "ExceptionType: message" instead of clip_l/clip_g when ComfyUI raised},
              ...then Unicode probes: {"prompt", "hf_ids"} only]}

Weights are JSON numbers (Python doubles, written with repr precision); non-finite ones are the
strings "inf", "-inf", "nan".

Needs: a ComfyUI v0.8.0 source tree (--comfy), torch, safetensors, transformers (as ComfyUI's
requirements). No network: the tokenizer files come from --vocab or ComfyUI's comfy/sd1_tokenizer.

  python3 tools/goldens/make_tokenizer_goldens.py --comfy /path/to/ComfyUI \\
      [--vocab ../shared/data/clip-tokenizer] [--out tests/data/tokenizer/comfy_tokens.json]
"""
import argparse
import json
import logging
import math
import os
import platform
import random
import sys
import tempfile
import unicodedata

# Each embedding fixture: file (relative to the embeddings folder), rows, marker base. Row r of
# a fixture holds the value marker + r everywhere, so a slot can be traced back to it.
EMBEDDINGS = [
    ("sdflowtest.safetensors", 2, 1000.0),
    ("sdflow_one.safetensors", 1, 2000.0),  # stored 1-D: one slot
    ("sub/deep.pt", 3, 3000.0),  # A1111 layout (string_to_param), in a subfolder
]


def long_words(n, seed):
    rnd = random.Random(seed)
    pool = ["cat", "dog", "house", "tree", "mountain", "river", "portrait", "lighting", "cinematic", "detailed",
            "painting", "sky", "sunset", "forest", "castle", "dragon", "knight", "city", "night", "rain"]
    return " ".join(rnd.choice(pool) for _ in range(n))


def fixed_prompts():
    p = [
        "a photo of a cat", "A PHOTO OF A CAT", "", " ", "\n", "   spaced    out   ",
        "masterpiece, best quality, (ultra detailed:1.2), 1girl, solo, long_hair",
        # weights
        "(a:1.2)", "(a)", "((a))", "(((a)))", "((a:1.5))", "(a:1.5) b (c:0.5)", "(a (b:0.5) c)", "(a:b)",
        "(a:-0.5)", "(a:0)", "(a: 1.3 )", "(a:1e-2)", "(a:1_0)", "(a:1__0)", "(a:_1)", "(a:+2)", "(a:.5)", "(a:5.)",
        "(a:1.2.3)", "(a:)", "(:1.2)", "(a:1.2:1.3)", "(a:b:1.3)", "(a:inf)", "(a:-Infinity)", "(a:nan)",
        "(a:\uff11.\uff15)", "(a:\u0661.\u0665)", "(a:1\u00a0)", "(a:1e400)", "(a:1e-400)", "(a:0x10)",
        "(a:1.5\x1c)", "(a:\u20021.5)", "(red:1.1) (green:0.9) (blue:1.0)", "(a:1.0)", "((a:1.0))",
        "(a b c d e f g h i j k:1.3)", "((a) b:1.5)", "(a (b (c (d))))", "(masterpiece:1.2), (best quality:1.1), cat",
        # escapes
        "\\(a\\)", "\\(a:1.2\\)", "(a \\(b\\) c:1.3)", "\\\\(a)", "a\\b", "\\((a))", "(a\\):1.5)", "\\)\\(", "smile \\(:1.2",
        # unbalanced and empty groups
        "(a", "a)", "a) (b)", "((a)", "(a))", ")(", "(((", ")))a(b)", "(a:1.2", "a:1.2)", "()", "(())", "(:)", "( )",
        "((a)) (b", "a (b c) d) (e:1.3) f",
        # embeddings (fixtures above; everything else is missing)
        "embedding:sdflowtest", "a embedding:sdflowtest b", "a, embedding:sdflowtest, b", "embedding:missing_xyz",
        "a embedding:missing_xyz b", "(embedding:sdflowtest:1.2)", "embedding:sdflowtest.safetensors",
        "embedding:sub/deep", "embedding:deep", "embedding:sdflow_one", "xembedding:sdflowtest",
        "a\nembedding:sdflowtest", "a  embedding:sdflowtest", "embedding:sdflowtest,,,", "embedding:,sdflowtest",
        "embedding:sdflowtest,", "embedding:missing_xyz, tail", "embedding:../sdflowtest", "EMBEDDING:sdflowtest",
        "embedding:sdflowtest.bin", "a embedding:", "embedding:sdflowtest embedding:sdflow_one embedding:deep",
        "(a embedding:sdflowtest b:0.8)", "cat, embedding:sdflowtest\tdog",
        # unicode, emoji, special-token text
        "caf\u00e9 na\u00efve r\u00e9sum\u00e9", "cafe\u0301", "\u212b \u2126 \u1e9b\u0323", "\u039f\u0394\u039f\u03a3 \u03a3\u039f\u03a6\u039f\u03a3. \u03a3",
        "\u0130stanbul", "\u732b\u54aa\u5728\u7761\u89c9", "\u6771\u4eac\u30bf\u30ef\u30fc and \uc11c\uc6b8\ud2b9\ubcc4\uc2dc",
        "\u1100\u1161\u11a8", "emoji \U0001F469\u200d\U0001F469\u200d\U0001F467 \u2764\ufe0f \U0001F1EB\U0001F1F7 \U0001F44D\U0001F3FD",
        "tab\there\nnew\rline\x0bvt\x0cff\x1cfs\x85nel\u2028ls\u3000ideo\u00a0nb", "zero\u200bwidth\ufeffbom",
        "ctrl\x00\x07bell\ufffdrepl", "\u0661\u0662\u0663 \uff14\uff15\uff16 123", "\ufb01ne \ufb02ower", "\uff21\uff22\uff23 \uff46\uff55\uff4c\uff4c",
        "\u03a3\u0345", "\U0001D573\U0001D58A\U0001D591\U0001D591\U0001D594", "\u216b \u217b \u2460\u2461", "x\u00b2\u00b3 \u00bd",
        "\U00020000\U0002A6D6 \u4e3d", "\uf900\uf901 \u5140", "\U0001F9D1\U0001F3FB\u200d\U0001F4BB code",
        "hello<|endoftext|>world", "!<|endoftext|>!", "a <|ENDOFTEXT|> b", "<|startoftext|>", "x<|startoftext|><|endoftext|>y",
        "it's a dog's life, isn't it? we'll see; they're here", "''s", "!'s", "3.14159 2026-11-22",
        # chunking
        long_words(200, 1), long_words(75, 2), long_words(76, 3), long_words(74, 4), long_words(150, 5), long_words(151, 6),
        long_words(300, 7), ", ".join("(%s:1.1)" % long_words(5, 100 + i) for i in range(20)),
        ", ".join("(%s:0.9)" % long_words(7, 200 + i) for i in range(16)),
        ", ".join("(%s:1.2)" % long_words(8, 300 + i) for i in range(12)),
        long_words(70, 8) + " (" + long_words(9, 9) + ":1.3) " + long_words(40, 10),
        long_words(72, 11) + " (" + long_words(6, 12) + ":1.3) " + long_words(3, 13),
        "(" + long_words(100, 14) + ":0.7)",
    ]
    return p


def random_prompts(n, seed):
    rnd = random.Random(seed)
    words = ["cat", "Dog", "a", "photo", "of", "the", "masterpiece", "best", "quality", "1girl", "long_hair",
             "caf\u00e9", "\u732b", "\u6771\u4eac", "\u30bf\u30ef\u30fc", "\uc11c\uc6b8", "\U0001F600", "\U0001F44D\U0001F3FD",
             "\u03a3\u039f\u03a6\u039f\u03a3", "it's", "we'll", "3.5", "x2", "<|endoftext|>", "\u00a0", "e\u0301",
             "embedding:sdflowtest", "embedding:missing", "embedding:deep,"]
    seps = [" ", ", ", ",", "\n", "  ", " | ", ". "]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rnd.randint(1, 30)):
            w = rnd.choice(words)
            r = rnd.random()
            if r < 0.1:
                w = "(%s)" % w
            elif r < 0.2:
                w = "(%s:%s)" % (w, rnd.choice(["1.2", "0.8", "1.05", "2", "-1", "x", "", "1.3.1"]))
            elif r < 0.25:
                w = "((%s))" % w
            elif r < 0.28:
                w = rnd.choice(["(", ")", "\\(", "\\)"]) + w
            parts.append(w)
            parts.append(rnd.choice(seps))
        out.append("".join(parts).strip(" "))
    return out


def unicode_probes(n, seed):
    """Strings for the HF tokenizer alone (hf_ids only): NFC around combining marks (those
    added after Unicode 9.0 included: the tokenizers library does not know them), case
    mapping, letters and numbers of many scripts. Only characters of Unicode <= 14."""
    marks = (list(range(0x300, 0x370)) + list(range(0x591, 0x5BE)) + list(range(0x64B, 0x660)) + [0x7FD] +
             list(range(0x898, 0x8A0)) + list(range(0x8CA, 0x8E2)) + [0x93C, 0x94D, 0x9BC, 0xC3C, 0xD3B, 0xD3C, 0xEBA,
                                                                       0x1715, 0x3099, 0x309A, 0xA82C] +
             list(range(0x1AB0, 0x1ACF)) + list(range(0x1DC0, 0x1E00)) + list(range(0x20D0, 0x20F1)) +
             list(range(0x302A, 0x3030)))
    out = []
    for m in marks:
        x = chr(m)
        out += ["a" + x + "\u0301", "a" + x + "\u0323", "a\u0323" + x]
    pool = (list(range(0x20, 0x7F)) + list(range(0xA0, 0x250)) + list(range(0x370, 0x530)) + list(range(0x600, 0x700)) +
            list(range(0x900, 0x980)) + list(range(0x1100, 0x1200)) + list(range(0x1E00, 0x2070)) +
            list(range(0x2100, 0x2190)) + list(range(0x2460, 0x24FF)) + list(range(0x3000, 0x3100)) +
            list(range(0x4E00, 0x4E80)) + list(range(0xAC00, 0xAC80)) + list(range(0xFB00, 0xFB50)) +
            list(range(0xFF00, 0xFFEF)) + list(range(0x1D400, 0x1D800)) + list(range(0x1F300, 0x1F650)) +
            [0x9, 0xA, 0xD, 0xB, 0xC, 0x1C, 0x85, 0x200B, 0x200D, 0xFE0F, 0x130, 0x3A3, 0x345, 0x212B, 0x2126] + marks)
    rnd = random.Random(seed)
    for _ in range(n):
        out.append("".join(chr(rnd.choice(pool)) for _ in range(rnd.randint(1, 16))))
    return out


def make_embeddings(folder, torch, safetensors_torch):
    for rel, rows, marker in EMBEDDINGS:
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        def block(dim):
            t = torch.stack([torch.full((dim,), marker + r) for r in range(rows)])
            return t[0] if rel == "sdflow_one.safetensors" else t
        if rel.endswith(".safetensors"):
            safetensors_torch.save_file({"clip_l": block(768), "clip_g": block(1280)}, path)
        else:
            torch.save({"string_to_param": {"*": block(768)}}, path)


def weight_json(w):
    w = float(w)
    if math.isnan(w):
        return "nan"
    if math.isinf(w):
        return "inf" if w > 0 else "-inf"
    return w


def token_json(t, w):
    if isinstance(t, int):
        return [t, weight_json(w)]
    v = float(t.reshape(-1)[0])
    for rel, rows, marker in EMBEDDINGS:
        if marker <= v < marker + rows:
            stem = os.path.splitext(os.path.basename(rel))[0]
            return [{"embedding": stem, "row": int(v - marker)}, weight_json(w)]
    raise RuntimeError("unrecognised embedding slot (value %r)" % v)


def run_tokenizer(tok, prompt):
    chunks = tok.tokenize_with_weights(prompt)
    return [[token_json(t, w) for t, w in chunk] for chunk in chunks]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfy", required=True, help="ComfyUI source tree (v0.8.0)")
    ap.add_argument("--vocab", help="folder with vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json "
                                    "(default: ComfyUI's comfy/sd1_tokenizer)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                                  "data", "tokenizer", "comfy_tokens.json"))
    ap.add_argument("--random", type=int, default=120, help="number of seeded random prompts")
    ap.add_argument("--probes", type=int, default=400, help="number of random Unicode strings checked (HF ids only)")
    args = ap.parse_args()

    comfy_dir = os.path.abspath(args.comfy)
    sys.path.insert(0, comfy_dir)
    sys.argv = [sys.argv[0]]  # ComfyUI's argument parser must not see ours
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    logging.basicConfig(level=logging.ERROR)

    import torch
    import safetensors.torch
    import transformers
    import comfy.sd1_clip as sd1_clip
    import comfy.sdxl_clip as sdxl_clip

    version = "unknown"
    try:
        import comfyui_version
        version = comfyui_version.__version__
    except Exception:
        pass
    if version != "0.8.0":
        print("warning: ComfyUI version is %s, the goldens are meant for 0.8.0" % version, file=sys.stderr)

    vocab = os.path.abspath(args.vocab) if args.vocab else os.path.join(comfy_dir, "comfy", "sd1_tokenizer")
    for f in ("vocab.json", "merges.txt"):
        if not os.path.isfile(os.path.join(vocab, f)):
            sys.exit("no %s in %s" % (f, vocab))

    emb_dir = tempfile.mkdtemp(prefix="sdflow_emb_")
    make_embeddings(emb_dir, torch, safetensors.torch)

    tok_l = sd1_clip.SDTokenizer(tokenizer_path=vocab, embedding_directory=emb_dir)
    tok_g = sdxl_clip.SDXLClipGTokenizer(tokenizer_path=vocab, embedding_directory=emb_dir)
    tok_l_plain = sd1_clip.SDTokenizer(tokenizer_path=vocab, embedding_directory=None)
    hf = tok_l.tokenizer
    ftfy = getattr(hf, "fix_text", None) is not None
    if ftfy:
        print("warning: ftfy is installed; transformers' slow CLIPTokenizer uses it and sdflow does not emulate it",
              file=sys.stderr)

    # ComfyUI's own wrappers (default tokenizer folder) must agree with the explicit ones.
    wrappers = None
    if args.vocab is None:
        wrappers = sdxl_clip.SDXLTokenizer(embedding_directory=emb_dir)

    prompts = fixed_prompts() + random_prompts(args.random, 20261122)
    cases = []
    for prompt in prompts:
        case = {"prompt": prompt}
        try:
            case["clip_l"] = run_tokenizer(tok_l, prompt)
            case["clip_g"] = run_tokenizer(tok_g, prompt)
            if wrappers is not None:
                both = wrappers.tokenize_with_weights(prompt)
                for key, mine in (("l", case["clip_l"]), ("g", case["clip_g"])):
                    theirs = [[token_json(t, w) for t, w in chunk] for chunk in both[key]]
                    if theirs != mine:
                        sys.exit("SDXLTokenizer[%s] disagrees with the explicit tokenizer on %r" % (key, prompt))
        except Exception as e:  # recorded: sdflow documents how it differs there
            case.pop("clip_l", None)
            case.pop("clip_g", None)
            case["error"] = "%s: %s" % (type(e).__name__, e)
        if "embedding:" in prompt:
            try:
                case["clip_l_no_embeddings"] = run_tokenizer(tok_l_plain, prompt)
            except Exception as e:
                case["error_no_embeddings"] = "%s: %s" % (type(e).__name__, e)
        case["hf_ids"] = list(hf(prompt)["input_ids"])
        cases.append(case)

    for probe in unicode_probes(args.probes, 9):
        cases.append({"prompt": probe, "hf_ids": list(hf(probe)["input_ids"])})

    meta = {
        "generated_by": "tools/goldens/make_tokenizer_goldens.py",
        "comfyui_version": version,
        "transformers_version": transformers.__version__,
        "tokenizer_class": type(hf).__name__,
        "is_fast": bool(getattr(hf, "is_fast", False)),
        "ftfy": ftfy,
        "python": platform.python_version(),
        "unicodedata": unicodedata.unidata_version,
        "torch": torch.__version__,
        "vocab": "--vocab" if args.vocab else "comfy/sd1_tokenizer",
        "embeddings": [{"file": rel, "rows": rows} for rel, rows, _ in EMBEDDINGS],
        "wrappers_checked": wrappers is not None,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write('{"meta": ' + json.dumps(meta, ensure_ascii=False, sort_keys=True) + ',\n"cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=True, separators=(",", ":")) for c in cases))
        f.write("\n]}\n")
    print("wrote %d cases to %s (%s, transformers %s, %s)" % (
        len(cases), os.path.abspath(args.out), version, transformers.__version__, meta["tokenizer_class"]))


if __name__ == "__main__":
    main()
