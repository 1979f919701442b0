"""Checks that .npz files written by src/io/npz.c load in numpy and in the way
the ADM evaluator (guided-diffusion evaluations/evaluator.py) reads them.

    make build/tests/test_npz
    /usr/bin/python3 dev/ref/npz_check.py            # small files, a second
    /usr/bin/python3 dev/ref/npz_check.py --big      # + a 4.3 GB ZIP64 file (about a minute, 4.3 GB of /tmp)

The C side (`test_npz --write-samples DIR [--big]`) writes:
  c_u8.npz          arr_0 uint8 [5, 8, 8, 3]
  c_four.npz        arr_0, mu (float64 [4]), sigma (float32 [2, 3]), scalar (float64 0-d)
  c_four_zip64.npz  the same with ZIP64 records forced
  c_big.npz         arr_0 uint8 [22000, 256, 256, 3] (byte k = k mod 251) and mu: past 4 GiB
Not part of `make fixtures` (its name does not end in _ref.py): it needs the C build.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def npz_arrays():
    # The same arrays as sampler_ref.npz_arrays() (kept here so this script needs no torch).
    arr_0 = ((np.arange(5 * 8 * 8 * 3) * 7 + 3) % 256).astype(np.uint8).reshape(5, 8, 8, 3)
    mu = (np.arange(4) / 3.0 - 0.5).astype(np.float64)
    sigma = (np.arange(6).reshape(2, 3) * 0.25 - 1).astype(np.float32)
    scalar = np.array(3.5, dtype=np.float64)
    return dict(arr_0=arr_0, mu=mu, sigma=sigma, scalar=scalar)


def evaluator_open(path, name):
    """evaluator.py's _open_npy_file + open_npz_array header parsing."""
    f = open(path, "rb")
    zf = zipfile.ZipFile(f, "r")
    if f"{name}.npy" not in zf.namelist():
        raise ValueError(f"missing {name} in npz file")
    arr_f = zf.open(f"{name}.npy", "r")
    version = np.lib.format.read_magic(arr_f)
    assert version == (1, 0), version
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(arr_f)
    assert not fortran
    return arr_f, shape, dtype, (zf, f)


def check_small(d):
    want = npz_arrays()
    for name, keys in (("c_u8.npz", ["arr_0"]), ("c_four.npz", list(want)), ("c_four_zip64.npz", list(want))):
        path = os.path.join(d, name)
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()  # reads every member and checks its CRC-32
            assert bad is None, (name, bad)
            assert sorted(zf.namelist()) == sorted(k + ".npy" for k in keys), zf.namelist()
            for info in zf.infolist():
                assert info.compress_type == zipfile.ZIP_STORED, (name, info)
        with np.load(path) as z:
            assert sorted(z.files) == sorted(keys), z.files
            for k in keys:
                assert z[k].dtype == want[k].dtype and z[k].shape == want[k].shape, (name, k, z[k].dtype, z[k].shape)
                assert np.array_equal(z[k], want[k]), (name, k)
        arr_f, shape, dtype, keep = evaluator_open(path, "arr_0")
        data = np.frombuffer(arr_f.read(), dtype=dtype).reshape(shape)
        assert np.array_equal(data, want["arr_0"])
        print(f"ok   {name}: numpy, zipfile.testzip and the evaluator's reader agree")


def check_big(d):
    path = os.path.join(d, "c_big.npz")
    arr_f, shape, dtype, keep = evaluator_open(path, "arr_0")
    assert shape == (22000, 256, 256, 3) and dtype == np.uint8, (shape, dtype)
    row = 256 * 256 * 3
    batch = 1000
    for start in range(0, shape[0], batch):  # evaluator's StreamingNpzArrayReader, batch by batch
        n = min(batch, shape[0] - start)
        buf = arr_f.read(n * row)
        assert len(buf) == n * row, (start, len(buf))
        if start % 5000 == 0 or start + n == shape[0]:
            k0 = start * row
            want = ((np.arange(n * row, dtype=np.int64) + k0) % 251).astype(np.uint8)
            assert np.array_equal(np.frombuffer(buf, dtype=np.uint8), want), start
    assert arr_f.read(1) == b""  # ZipExtFile checks the CRC-32 at the end of the member
    with np.load(path) as z:
        assert np.array_equal(z["mu"], npz_arrays()["mu"])
    print("ok   c_big.npz: 4.3 GB arr_0 streams through zipfile with a valid CRC; mu loads after it")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "tests", "test_npz"))
    ap.add_argument("--big", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        cmd = [args.bin, "--write-samples", d] + (["--big"] if args.big else [])
        subprocess.run(cmd, check=True)
        check_small(d)
        if args.big:
            check_big(d)


if __name__ == "__main__":
    main()
