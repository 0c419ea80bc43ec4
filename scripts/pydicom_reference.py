#!/usr/bin/env python3
"""Independent pixel reference for Lucent's tests: decodes DICOM files with pydicom (and the
pylibjpeg codecs) and writes each pixel array as OUTDIR/<index>.npy with shape
(frames, rows, columns, samples), or OUTDIR/<index>.err holding why pydicom could not decode it.

Usage: pydicom_reference.py OUTDIR FILE...
"""
import os
import sys

import numpy as np
import pydicom


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for i, path in enumerate(sys.argv[2:]):
        try:
            ds = pydicom.dcmread(path)
            if "PixelData" not in ds:
                raise ValueError("no Pixel Data")
            arr = ds.pixel_array
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            spp = int(ds.get("SamplesPerPixel", 1) or 1)
            arr = np.ascontiguousarray(arr).reshape(frames, int(ds.Rows), int(ds.Columns), spp)
            arr = arr.astype(arr.dtype.newbyteorder("<"))  # big-endian files give >i2 etc.
            np.save(os.path.join(out, f"{i}.npy"), arr)
        except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
            with open(os.path.join(out, f"{i}.err"), "w") as f:
                f.write(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
