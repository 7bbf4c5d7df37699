"""Peer of `cargo bench -p tessera-workers --bench imaging`.

Runs the same images through albumentations (methods) and through Pillow and
OpenCV (libjpeg-turbo: JPEG decode + re-encode), single-threaded, and prints
one JSON object per measurement on stdout.

    python albumentations_methods.py methods <spec.json>
    python albumentations_methods.py codec <spec.json>

The spec is written by the Rust bench: image paths, the methods with their
fixed parameters (the very values the Rust side runs with), the minimum time
per measurement, and the JPEG quality.
"""

import json
import os
import sys
import time

# Single thread everywhere, before numpy and OpenCV load.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = "1"
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)
cv2.ocl.setUseOpenCL(False)


def rate(fn, items, min_seconds):
    """Images per second of `fn` over `items`, repeated for at least `min_seconds`."""
    fn(items[0])  # warm-up
    done = 0
    start = time.perf_counter()
    while True:
        for item in items:
            fn(item)
        done += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def transform_for(method_id, p, shape):
    """The albumentations transform doing what `method_id` does with params `p`."""
    import albumentations as A

    h, w = shape[:2]
    const = dict(border_mode=cv2.BORDER_CONSTANT, fill=0)
    if method_id == "AUG-000":
        return A.Rotate(limit=(p["degrees"], p["degrees"]), interpolation=cv2.INTER_LINEAR, crop_border=False, p=1, **const)
    if method_id == "AUG-001":
        return A.Affine(scale=p["scale"], interpolation=cv2.INTER_LANCZOS4, p=1, **const)
    if method_id == "AUG-002":
        tx, ty = p["translate_x"], p["translate_y"]
        return A.Affine(translate_percent={"x": (tx, tx), "y": (ty, ty)}, p=1, **const)
    if method_id == "AUG-003":
        return A.HorizontalFlip(p=1)
    if method_id == "AUG-004":
        return A.VerticalFlip(p=1)
    if method_id == "AUG-005":
        cw, ch = min(int(p["width"]), w), min(int(p["height"]), h)
        x0 = round(p["x"] * (w - cw))
        y0 = round(p["y"] * (h - ch))
        return A.Crop(x_min=x0, y_min=y0, x_max=x0 + cw, y_max=y0 + ch, p=1)
    if method_id == "AUG-007":
        return A.Erasing(scale=(p["area"], p["area"]), ratio=(p["aspect"], p["aspect"]), fill=int(p["value"]), p=1)
    if method_id == "AUG-008":
        return A.GaussNoise(std_range=(p["std"], p["std"]), mean_range=(p["mean"], p["mean"]), per_channel=True, noise_scale_factor=1, p=1)
    if method_id == "AUG-009":
        k = int(p["kernel_size"])
        return A.GaussianBlur(blur_limit=(k, k), sigma_limit=(p["sigma"], p["sigma"]), p=1)
    if method_id == "AUG-010":
        # Not the same filter: a 3x3 sharpening kernel blended in, the closest
        # albumentations has to PIL's ImageEnhance.Sharpness.
        return A.Sharpen(alpha=(0.5, 0.5), lightness=(1.0, 1.0), method="kernel", p=1)
    if method_id == "AUG-011":
        # img * (1 + contrast) + 0: a pure multiplication by the factor.
        c = p["factor"] - 1.0
        return A.RandomBrightnessContrast(brightness_limit=(0, 0), contrast_limit=(c, c), p=1)
    if method_id == "AUG-012":
        return A.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(1, 1), hue=(p["shift"], p["shift"]), p=1)
    if method_id == "AUG-013":
        f = p["factor"]
        return A.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(f, f), hue=(0, 0), p=1)
    if method_id == "AUG-014":
        f = p["factor"]
        return A.ColorJitter(brightness=(1, 1), contrast=(f, f), saturation=(1, 1), hue=(0, 0), p=1)
    if method_id == "AUG-015":
        t = p["threshold"]
        return A.Solarize(threshold_range=(t, t), p=1)
    if method_id == "AUG-016":
        b = int(p["bits"])
        return A.Posterize(num_bits=(b, b), p=1)
    if method_id == "AUG-017":
        f = int(p["factor"])
        return A.Resize(height=h * f, width=w * f, interpolation=cv2.INTER_LANCZOS4, p=1)
    if method_id == "PRE-001":
        return A.ToGray(num_output_channels=3, method="weighted_average", p=1)
    if method_id == "PRE-008":
        return A.Equalize(mode="cv", by_channels=True, p=1)
    if method_id == "PRE-009":
        return A.Resize(height=int(p["height"]), width=int(p["width"]), interpolation=cv2.INTER_LANCZOS4, p=1)
    raise SystemExit(f"no albumentations peer for {method_id}")


def methods(spec):
    import albumentations as A

    images = []
    for path in spec["images"]:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        images.append(np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    print(json.dumps({"albumentations": A.__version__, "opencv": cv2.__version__, "numpy": np.__version__}), flush=True)
    for m in spec["methods"]:
        t = transform_for(m["id"], m["params"], images[0].shape)
        ips = rate(lambda img: t(image=img)["image"], images, spec["min_seconds"])
        print(json.dumps({"id": m["id"], "ips": ips}), flush=True)


def codec(spec):
    import io

    from PIL import Image, features

    quality = spec["quality"]
    files = [open(path, "rb").read() for path in spec["images"]]
    print(json.dumps({"pillow": Image.__version__, "libjpeg_turbo": features.version("libjpeg_turbo"), "opencv": cv2.__version__}), flush=True)

    def pillow_roundtrip(data):
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
        out = io.BytesIO()
        im.save(out, "JPEG", quality=quality, subsampling=spec["pillow_subsampling"])
        return out.getvalue()

    def pillow_decode(data):
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")

    def opencv_roundtrip(data):
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        ok, out = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, spec["opencv_sampling"]])
        return out

    s = spec["min_seconds"]
    print(json.dumps({"id": "pillow_roundtrip", "ips": rate(pillow_roundtrip, files, s), "bytes": len(pillow_roundtrip(files[0]))}), flush=True)
    print(json.dumps({"id": "pillow_decode", "ips": rate(pillow_decode, files, s)}), flush=True)
    decoded = [pillow_decode(f) for f in files]

    def pillow_encode(im):
        out = io.BytesIO()
        im.save(out, "JPEG", quality=quality, subsampling=spec["pillow_subsampling"])

    print(json.dumps({"id": "pillow_encode", "ips": rate(pillow_encode, decoded, s)}), flush=True)
    print(json.dumps({"id": "opencv_roundtrip", "ips": rate(opencv_roundtrip, files, s)}), flush=True)


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        spec = json.load(f)
    {"methods": methods, "codec": codec}[mode](spec)
