#!/usr/bin/env python3
"""Merges parity results.json files (a grid run over several device calls) into one markdown
summary: a sampler x scheduler matrix of final-latent rel-L2 and a list of the other cases.

    python3 tools/parity/grid_table.py docs/parity/sd15-*.json > /tmp/grid.md

Later files win for a case that appears twice. Cells: rel-L2 ("0" = bitwise equal), "FAIL ..."
when the case failed, "-" when no file has it.
"""
import json
import sys


def fmt(r):
    if r["status"] != "PASS":
        return "**" + r["status"].split(" ")[0] + "**"
    v = r.get("latent_rel_l2")
    return "0" if v == 0 else f"{v:.1e}"


def main(paths):
    cases, commits = {}, {}
    meta = None
    for p in paths:
        with open(p) as f:
            d = json.load(f)
        meta = meta or d["meta"]
        for r in d["results"]:
            if r["name"] not in cases or r["status"] == "PASS":
                cases[r["name"]] = r
                commits[r["name"]] = d["meta"].get("sdflow_commit", "?")
    grid = {(r["sampler"], r["scheduler"]): r for r in cases.values() if r["kind"] == "t2i" and r["precision"] == "fp16"}
    samplers = list(dict.fromkeys(meta["comfy"]["fp16"]["samplers"])) if "comfy" in meta else sorted({s for s, _ in grid})
    schedulers = list(dict.fromkeys(meta["comfy"]["fp16"]["schedulers"])) if "comfy" in meta else sorted({s for _, s in grid})
    n_pass = sum(r["status"] == "PASS" for r in cases.values())
    zero = sum(r["status"] == "PASS" and r.get("latent_rel_l2") == 0 for r in cases.values() if r["kind"] != "noise")
    measured = sum(r.get("latent_rel_l2") is not None for r in cases.values())
    print(f"{len(cases)} cases from {len(paths)} runs (sdflow commits: {', '.join(sorted(set(commits.values())))}): "
          f"{n_pass} PASS; {zero} of {measured} final latents bitwise equal; initial noise "
          f"{', '.join(sorted({r['noise'] for r in cases.values()}))}.\n")
    print("Final-latent rel-L2 vs ComfyUI, fp16, 512x512, 20 steps, cfg 7, batch 2:\n")
    print("| sampler | " + " | ".join(schedulers) + " |")
    print("|---|" + "---|" * len(schedulers))
    for s in samplers:
        print(f"| {s} | " + " | ".join(fmt(grid[(s, sch)]) if (s, sch) in grid else "-" for sch in schedulers) + " |")
    print("\nOther cases:\n")
    print("| case | noise | latent rel-L2 | PSNR dB | status |")
    print("|---|---|---|---|---|")
    for name, r in sorted(cases.items()):
        if (r["kind"] == "t2i" and r["precision"] == "fp16"):
            continue
        rel = "-" if r.get("latent_rel_l2") is None else fmt(r)
        print(f"| {name} | {r['noise']} | {rel} | {r.get('psnr_db', '-')} | {r['status'].split(' ')[0]} |")


if __name__ == "__main__":
    main(sys.argv[1:])
