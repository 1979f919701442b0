"""Plain Python pickles for the restricted unpickler (src/io/pickle.c), protocols 2-5.

torch.save writes protocol 2 by default, but a checkpoint can carry any value and
other tools save with protocol 4 or 5; this writes one value with every kind of
leaf a checkpoint's metadata may hold, in each protocol, so that the C test
(tests/test_torch_file.c, test_python_pickles_every_protocol) walks what
pickle_load made of it and compares it with the same values written out there:

  tests/fixtures/io/pickle_values_p{2,3,4,5}.pkl

What each protocol exercises: protocol 2 writes bytes as _codecs.encode(str,
"latin1") and b"" as __builtin__.bytes(); 3 writes SHORT_BINBYTES / BINBYTES;
4 and 5 add FRAME, MEMOIZE and SHORT_BINUNICODE; all write BININT1/2/4, LONG1
(signed, 5 to 8 bytes), BINFLOAT, TUPLE1-3 and MARK tuples, EMPTY_LIST with
APPENDS (in batches of 1000), EMPTY_DICT with SETITEMS (batches of 1000), an
OrderedDict through REDUCE, and one list stored twice (a memo get).
Deterministic: python3 dev/ref/pickle_ref.py writes the same bytes every run.
"""
import os
import pickle
import pickletools
from collections import OrderedDict

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "tests", "fixtures", "io")
os.makedirs(OUT, exist_ok=True)

shared = [1, 2]
value = {
    "none": None,
    "true": True,
    "false": False,
    # BININT1, BININT2, BININT (negative), LONG1 of 5 (positive and negative) and 8 bytes
    "ints": [0, 255, 256, 65535, 65536, -1, -129, -2 ** 31, 2 ** 31 - 1, 2 ** 31, -2 ** 40, 2 ** 63 - 1, -2 ** 63],
    "float": -1.5e300,
    "text": "h\u00e9llo \u2713",            # 2- and 3-byte UTF-8
    "long_text": "x" * 300,                  # BINUNICODE even in protocol 4
    "bytes": b"\x00\x7f\x80\xc3\xff",       # protocol 2: latin1 through _codecs.encode
    "empty_bytes": b"",                      # protocol 2: __builtin__.bytes()
    "long_bytes": bytes(range(256)) * 2,     # BINBYTES (protocol 3+)
    "tuples": ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)),
    "ordered": OrderedDict([("b", 2), ("a", 1)]),
    "big_list": list(range(1500)),           # two APPENDS batches
    "big_dict": {f"k{i}": i for i in range(1200)},  # two SETITEMS batches
    "shared": [shared, shared],              # the second is a memo get
}

for proto in (2, 3, 4, 5):
    data = pickle.dumps(value, protocol=proto)
    ops = {op.name for op, _, _ in pickletools.genops(data)}
    want = {2: {"GLOBAL", "REDUCE", "LONG1", "BININT2"}, 3: {"SHORT_BINBYTES", "BINBYTES"},
            4: {"FRAME", "MEMOIZE", "SHORT_BINUNICODE", "STACK_GLOBAL"}, 5: {"FRAME", "MEMOIZE"}}[proto]
    assert want <= ops, (proto, want - ops)
    assert pickle.loads(data) == value
    with open(os.path.join(OUT, f"pickle_values_p{proto}.pkl"), "wb") as f:
        f.write(data)
    print(f"pickle_values_p{proto}.pkl: {len(data)} bytes, opcodes {sorted(ops)}")
