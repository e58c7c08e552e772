#!/usr/bin/env python3
"""Generate the data-reader fixtures for test/data.test.js.

Run with a Python that has numpy and PIL (torchvision optional):
    /usr/bin/python3 scripts/make_data_fixtures.py

Deterministic: values come from integer formulas (no random numbers); running it
again rewrites the same bytes. Writes into test/fixtures/data/:

  npy/          values_<dtype>.npy (float32, float64, uint8, int64; shape (10, 2, 3); element i
                of the flattened array is VALUE[dtype](i), recomputed by the test),
                v2.npy / v3.npy (float32, format versions 2.0 and 3.0), vector.npy (shape (7,)),
                fortran.npy, bigendian.npy, float16.npy, int32.npy, scalar.npy (0-d),
                structured.npy, notnpy.npy (text), truncated.npy (two records cut off),
                convnet_input.npy (float32 (24, 3, 8, 8) for the CKA end-to-end test)
  images/       PNG, JPEG, WebP images with known pixels in nested folders, plus a .txt file
                and a corrupt dot-file that must both be skipped
  mixed/        two PNGs of different sizes
  corrupt/      a good PNG and a PNG that is not one
  empty/        no images (only a .txt)
  shapes/       solid-colour PNGs of 12x8 and 6x9 pixels (width x height) for resize/crop tests
  manifest.json what PIL decodes from every image (H x W x C uint8 lists), and, when
                torchvision is installed, its Resize(6) + CenterCrop(4) of images/gradient.png
"""
import io
import json
import os
import shutil

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "test", "fixtures", "data")


def value_float(i):
    return (i * 7 % 13) - 3.5


def value_uint8(i):
    return i * 37 % 256


def value_int64(i):
    # Beyond 2^32, so that a 32-bit read would show.
    return ((i * 7 % 13) - 6) * 1_000_000_000_000 + i


def formula_array(dtype, shape):
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.int64)
    if dtype == "uint8":
        return (i * 37 % 256).astype(np.uint8).reshape(shape)
    if dtype == "int64":
        return (((i * 7 % 13) - 6) * 1_000_000_000_000 + i).astype(np.int64).reshape(shape)
    return ((i * 7 % 13) - 3.5).astype(dtype).reshape(shape)


def path(*parts):
    full = os.path.join(OUT, *parts)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    return full


def save_version(file, array, version):
    with open(file, "wb") as f:
        np.lib.format.write_array(f, array, version=version)


def write_npy():
    shape = (10, 2, 3)
    for dtype in ["float32", "float64", "uint8", "int64"]:
        np.save(path("npy", f"values_{dtype}.npy"), formula_array(dtype, shape))
    save_version(path("npy", "v2.npy"), formula_array("float32", shape), (2, 0))
    save_version(path("npy", "v3.npy"), formula_array("float32", shape), (3, 0))
    np.save(path("npy", "vector.npy"), formula_array("float32", (7,)))
    np.save(path("npy", "fortran.npy"), np.asfortranarray(formula_array("float32", (4, 3))))
    np.save(path("npy", "bigendian.npy"), formula_array("float32", shape).astype(">f4"))
    np.save(path("npy", "float16.npy"), formula_array("float16", shape))
    np.save(path("npy", "int32.npy"), formula_array("float32", shape).astype(np.int32))
    np.save(path("npy", "scalar.npy"), np.float32(3.0))
    np.save(path("npy", "structured.npy"), np.zeros(3, dtype=[("a", "<f4"), ("b", "<i8")]))
    with open(path("npy", "notnpy.npy"), "w") as f:
        f.write("this is not an npy file\n")
    buffer = io.BytesIO()
    np.save(buffer, formula_array("float32", shape))
    data = buffer.getvalue()
    # 10 records of 24 bytes; keep 8 whole records and half of the 9th: record 8 is incomplete.
    with open(path("npy", "truncated.npy"), "wb") as f:
        f.write(data[: len(data) - 24 - 12])
    # Input of convnet_traced.pt: 24 samples of 3 x 8 x 8; element i = ((i * 7919) % 1000) / 1000 - 0.5.
    n = 24 * 3 * 8 * 8
    i = np.arange(n, dtype=np.int64)
    convnet = (((i * 7919) % 1000) / 1000.0 - 0.5).astype(np.float32).reshape(24, 3, 8, 8)
    np.save(path("npy", "convnet_input.npy"), convnet)


def solid(width, height, colour, mode="RGB"):
    return Image.new(mode, (width, height), colour)


def gradient(width, height):
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    for y in range(height):
        for x in range(width):
            pixels[y, x] = (x * 255 // (width - 1), y * 255 // (height - 1), (x * 13 + y * 29) % 256)
    return Image.fromarray(pixels, "RGB")


def write_images(manifest):
    images = {
        "a_red.png": (solid(8, 8, (255, 0, 0)), {}),
        "alpha.PNG": (solid(8, 8, (10, 20, 30, 100), "RGBA"), {"format": "PNG"}),
        "b/green.jpg": (solid(8, 8, (0, 255, 0)), {"quality": 95}),
        "b/c/blue.webp": (solid(8, 8, (0, 0, 255)), {"lossless": True}),
        "gradient.png": (gradient(8, 8), {}),
        "gray.png": (solid(8, 8, 128, "L"), {}),
    }
    decoded = {}
    for name, (image, options) in images.items():
        file = path("images", *name.split("/"))
        image.save(file, **options)
        with Image.open(file) as reread:
            decoded[name] = {
                "rgb": np.asarray(reread.convert("RGB")).tolist(),
                "gray": np.asarray(reread.convert("L")).tolist(),
            }
    with open(path("images", "notes.txt"), "w") as f:
        f.write("not an image; the reader skips it\n")
    with open(path("images", ".hidden.png"), "wb") as f:
        f.write(b"dot-files are skipped")
    manifest["images"] = {"order": sorted(images), "decoded": decoded}

    solid(8, 8, (1, 2, 3)).save(path("mixed", "a.png"))
    solid(10, 6, (1, 2, 3)).save(path("mixed", "b.png"))

    solid(8, 8, (1, 2, 3)).save(path("corrupt", "a_good.png"))
    with open(path("corrupt", "b_bad.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + bytes(range(64)))

    with open(path("empty", "readme.txt"), "w") as f:
        f.write("no images here\n")

    solid(12, 8, (200, 100, 50)).save(path("shapes", "wide.png"))
    solid(6, 9, (200, 100, 50)).save(path("shapes", "tall.png"))

    try:
        import torch
        from torchvision import transforms
    except ImportError:
        return
    with Image.open(path("images", "gradient.png")) as image:
        tensor = transforms.Compose([transforms.Resize(6), transforms.CenterCrop(4), transforms.ToTensor()])(image)
    manifest["torchvisionResize6Crop4"] = {
        "file": "images/gradient.png",
        "shape": list(tensor.shape),
        "values": [round(float(v), 6) for v in tensor.flatten().tolist()],
        "torchvision": __import__("torchvision").__version__,
        "torch": torch.__version__,
    }


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    manifest = {}
    write_npy()
    write_images(manifest)
    with open(path("manifest.json"), "w") as f:
        json.dump(manifest, f, indent=None, separators=(",", ":"), sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
