#!/usr/bin/env python3
"""Write byom's operator history table from the PyTorch releases themselves.

For every PyTorch minor release from 1.8 to 2.11 this reads the ATen operator schemas that the
release's own wheel ships (`torch/include/ATen/RegistrationDeclarations.h`: one line per native
operator, with its full schema `aten::name.overload(Type arg=default, *, Type kwarg) -> ...`) and
records, for every operator, the first release that has it; for every argument name, the first
release where some overload of that operator takes it; and for every positional-argument count,
the first release where some overload accepts that many positional arguments. The table
(`crates/byom-core/src/torch/op_history.txt`) is what the core uses to say "`torch.X` needs
PyTorch ≥ 2.0" for an operator found in a TorchScript file's code.

Only the one member is read from each wheel: the wheel's zip central directory and the member's
bytes are fetched with HTTP Range requests (about 60 KB a release, never the whole GB wheel), and
checked against the CRC-32 the wheel's own central directory records. Fetched members are cached
outside the repository (`$BYOM_TORCH_OPS_CACHE`, default `~/.cache/byom/torch-ops`), so a second
run needs no network.

Usage:
    python tools/torch_ops/extract.py            # (re)write the table
    python tools/torch_ops/extract.py --check    # exit 1 if the table is not what the wheels give
    python tools/torch_ops/extract.py --discover 2.12   # print the RELEASES line for a new release

To add a release: run `--discover X.Y`, append the printed line to RELEASES, rerun the script, and
commit the script and the table together (tests/test_op_history.py checks that they agree).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import struct
import sys
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "crates" / "byom-core" / "src" / "torch" / "op_history.txt"
MEMBER = "torch/include/ATen/RegistrationDeclarations.h"
FILES = "https://files.pythonhosted.org/packages/"

# (release, wheel path under files.pythonhosted.org/packages/, wheel size, wheel sha256 as PyPI
# lists it). The first x.y.0 upload of a manylinux x86_64 wheel: cp39 where cp310 did not exist
# yet, cp310 after. The member read is the same C++ header whatever the Python tag.
RELEASES = [
    ("1.8", "99/05/db9d7b5eca140ce20042101233ba19ddabebbcfc1a0ad4139bd0e1c4e12e/torch-1.8.0-cp39-cp39-manylinux1_x86_64.whl", 735529336, "2318fac860ae73dc6486c0de2223674d9ef6139fc75f157af2bf8dce4fca5524"),
    ("1.9", "18/dc/364619ec35762f0fda9b1ac5bc73e4372a0e451f15e38ef601d3ef006a17/torch-1.9.0-cp39-cp39-manylinux1_x86_64.whl", 831430881, "95eeec3a6c42fd35aca552777b7d9979ed489760423de97c0118a45e849a61f4"),
    ("1.10", "eb/59/ada45144bea5fb8b6abaff2195237721beae20a0f129722f493d91403469/torch-1.10.0-cp39-cp39-manylinux1_x86_64.whl", 881910301, "d82e68302c9b5c76ed585e04d61be0ca2184f70cb8ffeba8610570609ad5d7c9"),
    ("1.11", "76/96/3fd30662981043ac6fa1dc4f2cf8f5fa5401cc125ff7b7bf1536eae5db28/torch-1.11.0-cp310-cp310-manylinux1_x86_64.whl", 750593273, "62052b50fffc29ca7afc0c04ef8206b6f1ca9d10629cb543077e12967e8d0398"),
    ("1.12", "52/c2/323619638a1154da0a134297a4cc1c46df4142e9fd553370301937e21fcb/torch-1.12.0-cp310-cp310-manylinux1_x86_64.whl", 776325432, "3322d33a06e440d715bb214334bd41314c94632d9a2f07d22006bf21da3a2be4"),
    ("1.13", "83/4b/f71a84a44192ff5fc57c2a82b9b015876c3244d3ef478a8910b701515ed0/torch-1.13.0-cp310-cp310-manylinux1_x86_64.whl", 890140157, "f68edfea71ade3862039ba66bcedf954190a2db03b0c41a9b79afd72210abd97"),
    ("2.0", "b6/b1/f562cb533751c272d23f605858cd17d6a6c50fa8cd3c1f99539e2acd359f/torch-2.0.0-cp310-cp310-manylinux1_x86_64.whl", 619894634, "7a9319a67294ef02459a19738bbfa8727bb5307b822dadd708bc2ccf6c901aca"),
    ("2.1", "6d/13/b5e8bacd980b2195f8a1741ce11cbb9146568607795d5e4ff510dcff1064/torch-2.1.0-cp310-cp310-manylinux1_x86_64.whl", 670168911, "bf57f8184b2c317ef81fb33dc233ce4d850cd98ef3f4a38be59c7c1572d175db"),
    ("2.2", "8c/67/fcc9b9e2369a9bae4da492aedc0c2dfa95d563ef0eaa9228b70c98395ec2/torch-2.2.0-cp310-cp310-manylinux1_x86_64.whl", 755505538, "d366158d6503a3447e67f8c0ad1328d54e6c181d88572d688a625fac61b13a97"),
    ("2.3", "43/e5/2ddae60ae999b224aceb74490abeb885ee118227f866cb12046f0481d4c9/torch-2.3.0-cp310-cp310-manylinux1_x86_64.whl", 779141888, "d8ea5a465dbfd8501f33c937d1f693176c9aef9d1c1b0ca1d44ed7b0a18c52ac"),
    ("2.4", "9a/bd/4161ae28fb1c388a8ee30ca3aa72cf11ac3016ce62bc9e82c71ce193c410/torch-2.4.0-cp310-cp310-manylinux1_x86_64.whl", 797225217, "4ed94583e244af51d6a8d28701ca5a9e02d1219e782f5a01dd401f90af17d8ac"),
    ("2.5", "f1/82/adc3a77b9fbbcb79d398d565d39dc0e09f43fff088599d15da81e6cfaaec/torch-2.5.0-cp310-cp310-manylinux1_x86_64.whl", 906443143, "7f179373a047b947dec448243f4e6598a1c960fa3bb978a9a7eecd529fbc363f"),
    ("2.6", "37/81/aa9ab58ec10264c1abe62c8b73f5086c3c558885d6beecebf699f0dbeaeb/torch-2.6.0-cp310-cp310-manylinux1_x86_64.whl", 766685561, "6860df13d9911ac158f4c44031609700e1eba07916fff62e21e6ffa0a9e01961"),
    ("2.7", "cc/2c/91d1de65573fce563f5284e69d9c56b57289625cffbbb6d533d5d56c36a5/torch-2.7.0-cp310-cp310-manylinux_2_28_x86_64.whl", 865164221, "0b9960183b6e5b71239a3e6c883d8852c304e691c0b2955f7045e8a6d05b9183"),
    ("2.8", "70/1c/58da560016f81c339ae14ab16c98153d51c941544ae568da3cb5b1ceb572/torch-2.8.0-cp310-cp310-manylinux_2_28_x86_64.whl", 888025420, "89aa9ee820bb39d4d72b794345cccef106b574508dd17dbec457949678c76011"),
    ("2.9", "58/1d/fd1e88ae0948825efcab7dd66d12bec23f05d4d38ed81573c8d453c14c06/torch-2.9.0-cp310-cp310-manylinux_2_28_x86_64.whl", 899795167, "51cb63902182a78e90886e8068befd8ea102af4b00e420263591a3d70c7d3c6c"),
    ("2.10", "b5/60/6662535354191e2d1555296045b63e4279e5a9dbad49acf55a5d38655a39/torch-2.10.0-cp310-cp310-manylinux_2_28_x86_64.whl", 915599237, "aaf663927bcd490ae971469a624c322202a2a1e68936eb952535ca4cd3b90444"),
    ("2.11", "f9/1e/18a9b10b4bd34f12d4e561c52b0ae7158707b8193c6cfc0aad2b48167090/torch-2.11.0-cp310-cp310-manylinux_2_28_x86_64.whl", 530589207, "1b32ceda909818a03b112006709b02be1877240c31750a8d9c6b7bf5f2d8a6e5"),
]

# Every fetched byte count is bounded: a wheel's central directory and one header are small.
MAX_CENTRAL_DIRECTORY = 16 << 20
MAX_MEMBER = 8 << 20


def wheel_name(path: str) -> str:
    return path.rsplit("/", 1)[1]


def source_lines() -> list[str]:
    """The `source` lines the table must carry for the RELEASES above (the staleness test reads this)."""
    return [f"source {rel} {wheel_name(p)} sha256={sha}" for rel, p, _size, sha in RELEASES]


# ---------------------------------------------------------------- fetching one zip member


def _range(url: str, start: int, end: int) -> bytes:
    req = urllib.request.Request(url, headers={"Range": f"bytes={start}-{end}", "User-Agent": "byom-torch-ops"})
    with urllib.request.urlopen(req, timeout=120) as r:
        if r.status != 206:
            raise RuntimeError(f"{url}: the server ignored the Range request (HTTP {r.status})")
        data = r.read(end - start + 2)
    if len(data) != end - start + 1:
        raise RuntimeError(f"{url}: asked for bytes {start}-{end}, got {len(data)} bytes")
    return data


def _central_directory(url: str, size: int) -> dict[str, tuple[int, int, int, int, int]]:
    """name -> (method, compressed size, size, crc32, local header offset), from the zip's end."""
    tail_len = min(size, 65536 + 22 + 20 + 56)
    tail = _range(url, size - tail_len, size - 1)
    i = tail.rfind(b"PK\x05\x06")
    if i < 0:
        raise RuntimeError(f"{url}: no end-of-central-directory record")
    (count,) = struct.unpack("<H", tail[i + 10 : i + 12])
    cd_size, cd_off = struct.unpack("<II", tail[i + 12 : i + 20])
    if count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_off == 0xFFFFFFFF:
        j = tail.rfind(b"PK\x06\x06")
        count, cd_size, cd_off = struct.unpack("<QQQ", tail[j + 32 : j + 56])
    if cd_size > MAX_CENTRAL_DIRECTORY:
        raise RuntimeError(f"{url}: central directory of {cd_size} bytes is over the {MAX_CENTRAL_DIRECTORY} limit")
    cd = _range(url, cd_off, cd_off + cd_size - 1)
    out = {}
    p = 0
    while cd[p : p + 4] == b"PK\x01\x02":
        method, _t, _d, crc, csize, usize, nl, el, cl = struct.unpack("<HHHIIIHHH", cd[p + 10 : p + 34])
        (off,) = struct.unpack("<I", cd[p + 42 : p + 46])
        out[cd[p + 46 : p + 46 + nl].decode()] = (method, csize, usize, crc, off)
        p += 46 + nl + el + cl
    if len(out) != count:
        raise RuntimeError(f"{url}: central directory lists {len(out)} entries, end record says {count}")
    return out


def fetch_member(wheel_path: str, size: int, member: str, cache: Path) -> tuple[bytes, int]:
    """The member's bytes and CRC-32, from the cache or by Range requests."""
    name = wheel_name(wheel_path)
    cached = cache / name / member.replace("/", "__")
    if cached.exists():
        data = cached.read_bytes()
        return data, zlib.crc32(data)
    url = FILES + wheel_path
    print(f"fetching {member} from {name}", file=sys.stderr)
    method, csize, usize, crc, off = _central_directory(url, size)[member]
    if usize > MAX_MEMBER or csize > MAX_MEMBER:
        raise RuntimeError(f"{name}:{member} is {usize} bytes, over the {MAX_MEMBER} limit")
    header = _range(url, off, off + 29)
    if header[:4] != b"PK\x03\x04":
        raise RuntimeError(f"{name}: no local header at {off}")
    nl, el = struct.unpack("<HH", header[26:30])
    raw = _range(url, off + 30 + nl + el, off + 30 + nl + el + csize - 1)
    data = zlib.decompress(raw, -15) if method == 8 else raw
    if method not in (0, 8) or len(data) != usize or zlib.crc32(data) != crc:
        raise RuntimeError(f"{name}:{member}: CRC-32 or size does not match the central directory")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return data, crc


# ---------------------------------------------------------------- schemas

SCHEMA = re.compile(r'"schema": "aten::([A-Za-z0-9_]+)(?:\.([A-Za-z0-9_]+))?\((.*)\) -> ')


def split_top(s: str) -> list[str]:
    """Split a schema's argument list on commas outside brackets and quotes."""
    out, depth, quote, cur = [], 0, "", []
    for ch in s:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


@dataclass
class Schema:
    overload: str = ""
    positional: list[str] = field(default_factory=list)
    keyword_only: list[str] = field(default_factory=list)


def parse_schemas(text: str) -> dict[str, list[Schema]]:
    """op name -> its overloads' argument names, from RegistrationDeclarations.h."""
    ops: dict[str, list[Schema]] = {}
    for line in text.splitlines():
        m = SCHEMA.search(line)
        if not m:
            continue
        sch = Schema(overload=m.group(2) or "")
        kw = False
        for arg in split_top(m.group(3)):
            if arg == "*":
                kw = True
                continue
            name = arg.split("=", 1)[0].split()[-1]
            (sch.keyword_only if kw else sch.positional).append(name)
        ops.setdefault(m.group(1), []).append(sch)
    return ops


def version_key(rel: str) -> tuple[int, int]:
    a, b = rel.split(".")
    return int(a), int(b)


def non_native(newest: dict[str, list[Schema]]) -> dict[str, set[str]]:
    """aten names that the newest release also registers outside native_functions, with the
    argument names of those other overloads (`aten::copy.t(t[] self)`, list `copy()`, lives in
    the TorchScript interpreter, not in RegistrationDeclarations.h). Such a name cannot be dated
    from the headers: the non-native overloads may be older than the native one. Read from the
    installed torch, which must be the newest release in RELEASES (the project venv pins it)."""
    import torch

    have = torch.__version__.split("+")[0].rsplit(".", 1)[0]
    if have != RELEASES[-1][0]:
        raise SystemExit(f"the installed torch is {torch.__version__}; the table needs torch {RELEASES[-1][0]} (the newest release in RELEASES)")
    native = {(op, s.overload) for op, schemas in newest.items() for s in schemas}
    out: dict[str, set[str]] = {}
    for s in torch._C._jit_get_all_schemas():
        if s.name.startswith("aten::") and (s.name[6:], s.overload_name) not in native:
            out.setdefault(s.name[6:], set()).update(a.name for a in s.arguments)
    return out


def build_table(per_release: list[tuple[str, dict[str, list[Schema]]]], mixed: dict[str, set[str]]) -> list[str]:
    """The table's body lines: `[release]` sections listing what first appears in that release.

    Under `[X.Y]`, a line `name` says the operator `aten::name` first appears in X.Y; a line
    `name arg@A.B #N@C.D` adds that argument `arg` is first taken in A.B and that N positional
    arguments are first accepted in C.D. An operator is listed under its first release, with the
    later additions on the same line; an operator already in the oldest release appears under it
    only when something was added to it later. `~name` (under the oldest release) is a name also
    registered outside native_functions: only its argument additions are dated.
    """
    first: dict[str, str] = {}
    arg_first: dict[tuple[str, str], str] = {}
    arity_first: dict[tuple[str, int], str] = {}
    for rel, ops in per_release:
        for op, schemas in ops.items():
            first.setdefault(op, rel)
            for s in schemas:
                for a in s.positional + s.keyword_only:
                    arg_first.setdefault((op, a), rel)
            n = max(len(s.positional) for s in schemas)
            for k in range(n + 1):
                arity_first.setdefault((op, k), rel)
    oldest = per_release[0][0]
    lines_by_rel: dict[str, list[str]] = {}
    for op in sorted(first):
        rel = first[op]
        extras = sorted(
            (version_key(r), f"{a}@{r}")
            for (o, a), r in arg_first.items()
            if o == op and r != (oldest if op in mixed else rel) and a not in mixed.get(op, ())
        )
        items = [x for _k, x in extras]
        if op not in mixed:
            # Only the smallest count per release matters: N positional arguments first accepted
            # in X.Y implies every larger count is accepted from X.Y or later.
            seen = set()
            for _k, r in sorted((k, r) for (o, k), r in arity_first.items() if o == op and r != rel):
                if r not in seen:
                    seen.add(r)
                    items.append(f"#{_k}@{r}")
        if op in mixed:
            if items:
                lines_by_rel.setdefault(oldest, []).append(" ".join(["~" + op, *items]))
            continue
        if rel == oldest and not items:
            continue
        lines_by_rel.setdefault(rel, []).append(" ".join([op, *items]))
    out = []
    for rel, _p, _s, _sha in RELEASES:
        if rel in lines_by_rel:
            out.append(f"[{rel}]")
            out.extend(sorted(lines_by_rel[rel], key=lambda line: line.lstrip("~")))
    return out


def render(cache: Path) -> str:
    per_release = []
    crcs = []
    for rel, path, size, _sha in RELEASES:
        data, crc = fetch_member(path, size, MEMBER, cache)
        ops = parse_schemas(data.decode())
        if len(ops) < 1000:
            raise RuntimeError(f"{wheel_name(path)}: only {len(ops)} operators parsed from {MEMBER}")
        per_release.append((rel, ops))
        crcs.append(crc)
    mixed = non_native(per_release[-1][1])
    head = [
        "# The PyTorch release that first has each ATen operator, argument and positional-argument count.",
        "# Generated by tools/torch_ops/extract.py from each release's wheel member",
        f"# {MEMBER}; do not edit. Regenerate: python tools/torch_ops/extract.py",
        "# `name` under [X.Y]: aten::name first in X.Y; `arg@X.Y`: argument first taken in X.Y;",
        "# `#N@X.Y`: N positional arguments first accepted in X.Y. Operators of the oldest release",
        "# are listed only with what was added to them later. `~name`: also registered outside",
        f"# native_functions (per torch {RELEASES[-1][0]}'s own registry), so only its new arguments are dated.",
    ]
    srcs = [f"{line} crc32={c:08x}" for line, c in zip(source_lines(), crcs)]
    return "\n".join(head + srcs + build_table(per_release, mixed)) + "\n"


def read_table(text: str) -> list[tuple[str, str, str | None, str]]:
    """The table's claims: (operator, what, detail, release) with what "op" (first release),
    "arg" (detail = argument name) or "arity" (detail = count)."""
    claims, section, oldest = [], None, None
    for line in text.splitlines():
        if not line or line.startswith(("#", "source ")):
            continue
        if line.startswith("["):
            section = line[1:-1]
            oldest = oldest or section
            continue
        name, *items = line.split()
        if not name.startswith("~") and section != oldest:
            claims.append((name, "op", None, section))
        for item in items:
            what, rel = item.split("@")
            if what.startswith("#"):
                claims.append((name.lstrip("~"), "arity", what[1:], rel))
            else:
                claims.append((name.lstrip("~"), "arg", what, rel))
    return claims


def verify_registry(text: str, release: str, schemas: list[str]) -> list[str]:
    """Claims of the table that a real torch `release` contradicts, given every schema its
    interpreter registers (`str(s) for s in torch._C._jit_get_all_schemas()`, run by that torch:
    tests/torch18/schemas18.py). A claim dated after `release` must be absent from it; one dated
    at or before `release` must be present."""
    reg: dict[str, tuple[set[str], int]] = {}
    for s in schemas:
        m = re.match(r"aten::([A-Za-z0-9_]+)(?:\.[A-Za-z0-9_]+)?\((.*)\) -> ", s)
        if not m:
            continue
        args, pos = reg.get(m[1], (set(), 0))
        n, kw = 0, False
        for a in split_top(m[2]):
            if a == "*":
                kw = True
                continue
            args.add(a.split("=", 1)[0].split()[-1])
            n += 0 if kw else 1
        reg[m[1]] = (args, max(pos, n))
    bad = []
    for op, what, detail, rel in read_table(text):
        args, pos = reg.get(op, (set(), -1))
        has = op in reg if what == "op" else detail in args if what == "arg" else pos >= int(detail)
        if has != (version_key(rel) <= version_key(release)):
            bad.append(f"{op} {what} {detail or ''} dated {rel}, but torch {release} {'has' if has else 'lacks'} it")
    return bad


def discover(release: str) -> str:
    with urllib.request.urlopen(f"https://pypi.org/pypi/torch/{release}.0/json", timeout=60) as r:
        files = json.load(r)["urls"]
    for tag in ("cp310", "cp311", "cp312", "cp313"):
        for f in files:
            n = f["filename"]
            if n.startswith(f"torch-{release}.0-{tag}-{tag}-manylinux") and n.endswith("_x86_64.whl"):
                path = f["url"].split("/packages/", 1)[1]
                if path.startswith("packages/"):
                    path = path[len("packages/") :]
                return f'    ("{release}", "{path}", {f["size"]}, "{f["digests"]["sha256"]}"),'
    raise SystemExit(f"no manylinux x86_64 wheel for torch {release}.0 on PyPI")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the checked-in table is stale")
    ap.add_argument("--discover", metavar="X.Y", help="print the RELEASES line for a new release")
    ap.add_argument("--verify-registry", nargs=2, metavar=("X.Y", "SCHEMAS_JSON"),
                    help="check the table against the schemas a real torch X.Y registers (tests/torch18/schemas18.py)")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("BYOM_TORCH_OPS_CACHE", Path.home() / ".cache" / "byom" / "torch-ops")))
    args = ap.parse_args()
    if args.discover:
        print(discover(args.discover))
        return 0
    if args.verify_registry:
        release, path = args.verify_registry
        dump = json.loads(Path(path).read_text())
        bad = verify_registry(TABLE.read_text(), release, dump["schemas"])
        print(f"{len(read_table(TABLE.read_text()))} claims of the table checked against torch {dump['version']}'s "
              f"{len(dump['schemas'])} registered schemas: {len(bad)} contradicted")
        for b in bad:
            print("  " + b)
        return 1 if bad else 0
    text = render(args.cache)
    if args.check:
        if TABLE.read_text() != text:
            print(f"{TABLE.relative_to(ROOT)} is stale: rerun python tools/torch_ops/extract.py", file=sys.stderr)
            return 1
        print(f"{TABLE.relative_to(ROOT)} is up to date")
        return 0
    TABLE.write_text(text)
    print(f"wrote {TABLE.relative_to(ROOT)} ({len(text)} bytes, {text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
