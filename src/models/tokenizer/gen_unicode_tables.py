#!/usr/bin/env python3
"""Writes unicode_tables.cpp: the Unicode facts the CLIP tokenizer needs, from Python's own
unicodedata and str methods, so the C++ side classifies characters the way the Python
tokenizers that ComfyUI runs do, without ICU.

  python3 src/models/tokenizer/gen_unicode_tables.py > src/models/tokenizer/unicode_tables.cpp

Tables:
  property ranges  - letter (L*), number (N*), Python str.isspace, Unicode White_Space, Zs,
                     other (C*: Cc Cf Cs Co Cn), and the two facts behind str.lower()'s
                     final-sigma rule (cased, case-ignorable), probed from str.lower() itself
  decimal digits   - the code point of each Nd "zero" (digits come in runs of ten), for float()
  lowercase        - str.lower() of every code point that changes (context-free part)
  NFC              - canonical combining classes, full canonical decompositions (Hangul
                     excluded: it is algorithmic), and the primary composites
  NFC, Unicode 9   - the code points that NFC acts on but that Unicode 9.0 did not have yet:
                     the tokenizers library (transformers >= 5) normalizes with Unicode 9.0
                     tables, so for it they are plain starters (found from DerivedAge.txt)
The script checks its NFC tables against unicodedata.normalize before writing anything.

DerivedAge.txt comes from Debian's unicode-data package (apt-get install unicode-data), or pass
--derived-age PATH.
"""
import sys
import unicodedata

MAX_CP = 0x110000
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3

# Unicode's White_Space property (PropList.txt); Python exposes no accessor for it.
WHITE_SPACE = set(range(0x09, 0x0E)) | {0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F,
                                         0x3000} | set(range(0x2000, 0x200B))

F_LETTER, F_NUMBER, F_PYSPACE, F_WHITESPACE, F_ZS, F_OTHER, F_CASED, F_IGNORABLE = (1 << i for i in range(8))


def final_sigma_facts(c):
    # str.lower() maps U+03A3 to final sigma when a cased letter precedes it (skipping
    # case-ignorable ones). "c Σ" tells whether c stops the scan as cased; "A c Σ" whether c
    # is skipped.
    t1 = (c + "\u03a3").lower()[-1] == "\u03c2"
    t2 = ("A" + c + "\u03a3").lower()[-1] == "\u03c2"
    return t1, (t2 and not t1)


def flags_of(cp):
    c = chr(cp)
    cat = unicodedata.category(c)
    f = 0
    if cat[0] == "L":
        f |= F_LETTER
    if cat[0] == "N":
        f |= F_NUMBER
    if c.isspace():
        f |= F_PYSPACE
    if cp in WHITE_SPACE:
        f |= F_WHITESPACE
    if cat == "Zs":
        f |= F_ZS
    if cat[0] == "C":
        f |= F_OTHER
    if 0xD800 <= cp <= 0xDFFF:
        return f  # lone surrogates cannot be put in a str to probe
    cased, ignorable = final_sigma_facts(c)
    if cased:
        f |= F_CASED
    if ignorable:
        f |= F_IGNORABLE
    return f


def ranges_of(fn):
    out = []
    start, cur = 0, fn(0)
    for cp in range(1, MAX_CP):
        v = fn(cp)
        if v != cur:
            out.append((start, cp - 1, cur))
            start, cur = cp, v
    out.append((start, MAX_CP - 1, cur))
    return out


def canonical_mapping(cp):
    d = unicodedata.decomposition(chr(cp))
    if not d or d.startswith("<"):
        return None
    return [int(x, 16) for x in d.split()]


def full_decomposition(cp):
    m = canonical_mapping(cp)
    if m is None:
        return [cp]
    out = []
    for x in m:
        out.extend(full_decomposition(x))
    return out


def build_nfc():
    ccc = ranges_of(lambda cp: unicodedata.combining(chr(cp)) if not 0xD800 <= cp <= 0xDFFF else 0)
    ccc = [r for r in ccc if r[2] != 0]
    decomp = {}
    compose = {}
    for cp in range(MAX_CP):
        if HANGUL_FIRST <= cp <= HANGUL_LAST or 0xD800 <= cp <= 0xDFFF:
            continue
        m = canonical_mapping(cp)
        if m is None:
            continue
        decomp[cp] = full_decomposition(cp)
        # A primary composite: a two-character mapping that NFC gives back (this leaves out
        # the composition exclusions and the non-starter decompositions).
        if len(m) == 2 and unicodedata.normalize("NFC", chr(cp)) == chr(cp):
            compose[(m[0], m[1])] = cp
    return ccc, decomp, compose


def py_nfc(s, ccc_of, decomp, compose):
    """The algorithm the C++ side implements, run here to check the tables."""
    SBase, LBase, VBase, TBase, LCount, VCount, TCount = 0xAC00, 0x1100, 0x1161, 0x11A7, 19, 21, 28
    NCount = VCount * TCount
    d = []
    for ch in s:
        cp = ord(ch)
        if SBase <= cp < SBase + LCount * NCount:
            si = cp - SBase
            d.append(LBase + si // NCount)
            d.append(VBase + (si % NCount) // TCount)
            if si % TCount:
                d.append(TBase + si % TCount)
        else:
            d.extend(decomp.get(cp, [cp]))
    # canonical ordering: stable sort of each run of non-starters
    i = 0
    while i < len(d):
        if ccc_of(d[i]) == 0:
            i += 1
            continue
        j = i
        while j < len(d) and ccc_of(d[j]) != 0:
            j += 1
        d[i:j] = sorted(d[i:j], key=ccc_of)
        i = j
    if not d:
        return ""

    def compose_pair(a, b):
        if LBase <= a < LBase + LCount and VBase <= b < VBase + VCount:
            return SBase + ((a - LBase) * VCount + (b - VBase)) * TCount
        if SBase <= a < SBase + LCount * NCount and (a - SBase) % TCount == 0 and TBase < b < TBase + TCount:
            return a + (b - TBase)
        return compose.get((a, b))

    out = [d[0]]
    starter = 0
    last_ccc = 0 if ccc_of(d[0]) == 0 else 256  # a leading non-starter blocks everything
    for cp in d[1:]:
        c = ccc_of(cp)
        composite = compose_pair(out[starter], cp)
        if composite is not None and (last_ccc < c or last_ccc == 0):
            out[starter] = composite
            continue
        if c == 0:
            starter = len(out)
        last_ccc = c
        out.append(cp)
    return "".join(map(chr, out))


def check_nfc(ccc, decomp, compose):
    table = {}
    for a, b, v in ccc:
        for cp in range(a, b + 1):
            table[cp] = v
    ccc_of = lambda cp: table.get(cp, 0)
    samples = []
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        samples.append(chr(cp))
    marks = [0x0300, 0x0301, 0x0308, 0x0323, 0x0327, 0x0345, 0x05B0, 0x0F71, 0x0F72, 0x302A, 0x1DCE]
    bases = [0x41, 0x65, 0x6F, 0x55, 0x3B1, 0x3B9, 0x1100, 0xAC00, 0xAC01, 0x0F40, 0x0915, 0x212B]
    for b in bases:
        for m1 in marks:
            samples.append(chr(b) + chr(m1))
            for m2 in marks:
                samples.append(chr(b) + chr(m1) + chr(m2))
                samples.append(chr(b) + chr(m1) + chr(0x61) + chr(m2))
    samples += ["\u1100\u1161\u11a8", "\u1100\u1161", "\uac00\u11a8", "\u1100\u0300\u1161", "e\u0301\u0301"]
    bad = 0
    for s in samples:
        if py_nfc(s, ccc_of, decomp, compose) != unicodedata.normalize("NFC", s):
            bad += 1
            if bad < 10:
                print("NFC mismatch for", [hex(ord(c)) for c in s], file=sys.stderr)
    if bad:
        sys.exit("NFC table check failed (%d mismatches)" % bad)


def read_ages(path):
    ages = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#")[0].strip()
            if not line:
                continue
            rng, age = [x.strip() for x in line.split(";")]
            a, _, b = rng.partition("..")
            a = int(a, 16)
            b = int(b, 16) if b else a
            v = tuple(int(x) for x in age.split("."))
            for cp in range(a, b + 1):
                ages[cp] = v
    return ages


def emit_rows(items, per_line, fmt):
    lines = []
    for i in range(0, len(items), per_line):
        lines.append("    " + " ".join(fmt(x) for x in items[i:i + per_line]))
    return "\n".join(lines)


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--derived-age", default="/usr/share/unicode/DerivedAge.txt")
    derived_age = ap.parse_args().derived_age
    try:
        ages = read_ages(derived_age)
    except OSError:
        sys.exit("cannot read %s (apt-get install unicode-data, or pass --derived-age)" % derived_age)
    props = [r for r in ranges_of(flags_of) if r[2] != 0]
    zeros = [cp for cp in range(MAX_CP)
             if not 0xD800 <= cp <= 0xDFFF and unicodedata.category(chr(cp)) == "Nd"
             and unicodedata.decimal(chr(cp)) == 0]
    for z in zeros:  # every run of decimal digits is ten long, zero first
        assert all(unicodedata.decimal(chr(z + k), -1) == k for k in range(10)), hex(z)
    lower_single, lower_multi = [], []
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        lo = chr(cp).lower()
        if lo == chr(cp):
            continue
        if len(lo) == 1:
            lower_single.append((cp, ord(lo)))
        else:
            lower_multi.append((cp, [ord(x) for x in lo]))
    assert len(lower_multi) <= 4 and all(len(m) == 2 for _, m in lower_multi)
    ccc, decomp, compose = build_nfc()
    check_nfc(ccc, decomp, compose)

    flat = []
    decomp_rows = []
    for cp in sorted(decomp):
        seq = decomp[cp]
        decomp_rows.append((cp, len(flat), len(seq)))
        flat.extend(seq)
    compose_rows = sorted((a, b, c) for (a, b), c in compose.items())
    ccc_cps = {cp for a, b, _ in ccc for cp in range(a, b + 1)}
    touched = ccc_cps | set(decomp) | {x for pair in compose for x in pair} | set(compose.values())
    late = sorted(cp for cp in touched if ages.get(cp, (99,)) > (9, 0))

    w = sys.stdout.write
    with open(derived_age, encoding="utf-8") as f:
        age_source = f.readline().strip("# \n")
    w("// Generated by src/models/tokenizer/gen_unicode_tables.py from Python %s, unicodedata %s,\n"
      "// and %s.\n" % (sys.version.split()[0], unicodedata.unidata_version, age_source))
    w("// Do not edit: run the script again.\n")
    w("// clang-format off\n")
    w('#include "models/tokenizer/unicode_tables.h"\n\nnamespace sdflow::unicode::tables {\n\n')
    w('const char* const kUnicodeVersion = "%s";\n\n' % unicodedata.unidata_version)
    w("const PropRange kProps[] = {\n")
    w(emit_rows(props, 4, lambda r: "{0x%X, 0x%X, 0x%X}," % r))
    w("\n};\nconst size_t kPropsSize = %d;\n\n" % len(props))
    w("const char32_t kDigitZeros[] = {\n")
    w(emit_rows(zeros, 8, lambda z: "0x%X," % z))
    w("\n};\nconst size_t kDigitZerosSize = %d;\n\n" % len(zeros))
    w("const CodeMap kLower[] = {\n")
    w(emit_rows(lower_single, 6, lambda r: "{0x%X, 0x%X}," % r))
    w("\n};\nconst size_t kLowerSize = %d;\n\n" % len(lower_single))
    w("const CodeMap2 kLowerMulti[] = {\n")
    w(emit_rows(lower_multi, 2, lambda r: "{0x%X, {0x%X, 0x%X}}," % (r[0], r[1][0], r[1][1])))
    w("\n};\nconst size_t kLowerMultiSize = %d;\n\n" % len(lower_multi))
    w("const PropRange kCombiningClass[] = {\n")
    w(emit_rows(ccc, 4, lambda r: "{0x%X, 0x%X, %d}," % r))
    w("\n};\nconst size_t kCombiningClassSize = %d;\n\n" % len(ccc))
    w("const char32_t kDecompData[] = {\n")
    w(emit_rows(flat, 8, lambda c: "0x%X," % c))
    w("\n};\nconst Decomposition kDecomp[] = {\n")
    w(emit_rows(decomp_rows, 4, lambda r: "{0x%X, %d, %d}," % r))
    w("\n};\nconst size_t kDecompSize = %d;\n\n" % len(decomp_rows))
    w("const Composition kCompose[] = {\n")
    w(emit_rows(compose_rows, 4, lambda r: "{0x%X, 0x%X, 0x%X}," % r))
    w("\n};\nconst size_t kComposeSize = %d;\n\n" % len(compose_rows))
    w("const char32_t kAfterUnicode9[] = {\n")
    w(emit_rows(late, 8, lambda c: "0x%X," % c))
    w("\n};\nconst size_t kAfterUnicode9Size = %d;\n\n" % len(late))
    w("}  // namespace sdflow::unicode::tables\n")


if __name__ == "__main__":
    main()
