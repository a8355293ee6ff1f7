"""Build the evaluation reference cases from real masks and record the official values.

Run in a throwaway environment that has nnunetv2 2.8.1 (with numpy 2, scipy, nibabel,
scikit-image, tifffile):

    python generate.py SHARED_DATA_DIR OFFICIAL_EVALUATION_DIR OFFICIAL_PYTHON

OFFICIAL_EVALUATION_DIR is the `evaluation/` folder of github.com/JiarunLiu/Swin-UMamba at
commit 2c1f72e1975cef6621f239117efdc954237c6952, used unmodified. OFFICIAL_PYTHON is an
interpreter of a second environment that those scripts run in: they use `np.NaN`,
`np.Inf` and `scipy.ndimage.filters`, so it needs numpy<2 and scipy<1.12 (used: numpy
1.26.4, scipy 1.11.4, pandas 2.1.4, opencv-python-headless 4.9.0.80, numba 0.59.1,
scikit-image 0.22.0, tifffile, nibabel, tqdm). The script writes the cases next to itself
and the official outputs into each case folder's `expected/`.
"""
import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import tifffile
from scipy import ndimage
from skimage import io, segmentation

HERE = os.path.dirname(os.path.abspath(__file__))
DATA, OFFICIAL, OFFICIAL_PYTHON = sys.argv[1], sys.argv[2], sys.argv[3]


def fresh(*parts):
    path = os.path.join(HERE, *parts)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def per_label(seg, op):
    out = np.zeros_like(seg)
    for label in np.unique(seg):
        if label == 0:
            continue
        mask = op(seg == label)
        out[mask & (out == 0)] = label
    return out


# ---------------------------------------------------------------- abdomen (CHAOS T2)
def abdomen():
    ref_dir, pred_dir = fresh("abdomen", "ref"), fresh("abdomen", "pred")
    fresh("abdomen", "expected")
    rng = np.random.default_rng(0)
    for pid in ("1", "2"):
        nii = nib.load(os.path.join(DATA, "chaos-t2-mri", f"label_{pid}.nii.gz"))
        full = np.uint8(nii.get_fdata())
        z = np.where(full.sum(axis=(0, 1)) > 0)[0]
        # Every second voxel in-plane keeps files small; the spacing doubles accordingly.
        ref = np.ascontiguousarray(full[::2, ::2, z.min():z.max() + 1])
        affine = nii.affine.copy()
        affine[:2, :2] *= 2
        affine[affine == 0] = 0.0  # no negative zeros, which SimpleITK rejects
        slice_ref = ref.copy()
        slice_ref[ref == 2] = 5  # right kidney scored as "Aorta": reference slice range
        slice_ref[ref == 3] = 10  # left kidney scored as "Esophagus"
        one = np.argwhere(ref == 1)[len(np.argwhere(ref == 1)) // 2]
        # A two-slice "IVC": the official range [z_min, z_max) keeps one slice of it. (With a
        # one-slice organ the range is empty and the official NSD script fails.)
        slice_ref[one[0]:one[0] + 3, one[1]:one[1] + 3, one[2]:one[2] + 2] = 6
        extra = ref.copy()
        blob = np.argwhere(ref == 0)[rng.integers(0, (ref == 0).sum())]
        extra[blob[0]:blob[0] + 3, blob[1]:blob[1] + 3, blob[2]:blob[2] + 2] = 7
        variants = {
            "same": (ref, ref),
            "shift": (ref, np.roll(ref, (2, -1, 1), axis=(0, 1, 2))),
            "eroded": (ref, per_label(ref, lambda m: ndimage.binary_erosion(m))),
            "dilated": (ref, per_label(ref, lambda m: ndimage.binary_dilation(m, iterations=2))),
            "missing": (ref, np.where(ref == 4, 0, ref).astype(np.uint8)),
            "empty": (ref, np.zeros_like(ref)),
            "extra": (ref, extra),
            "slices": (slice_ref, np.roll(per_label(slice_ref, ndimage.binary_erosion), 1, axis=2)),
        }
        for name, (r, p) in variants.items():
            for folder, data in ((ref_dir, r), (pred_dir, p)):
                img = nib.Nifti1Image(np.uint8(data), affine)
                img.set_qform(affine, code=1)
                img.set_sform(affine, code=1)
                nib.save(img, os.path.join(folder, f"chaos{pid}_{name}.nii.gz"))
    labels = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}
    write_dataset("abdomen", labels, ".nii.gz")
    for script, out in (("abdomen_DSC_Eval.py", "dsc"), ("abdomen_NSD_Eval.py", "nsd")):
        run_official(script, "abdomen", out)


# ---------------------------------------------------------------- endoscopy (Kvasir-SEG)
def kvasir_masks(count):
    names = sorted(os.listdir(os.path.join(DATA, "kvasir-seg", "masks")))[:count]
    for name in names:
        mask = io.imread(os.path.join(DATA, "kvasir-seg", "masks", name))[..., 0] > 127
        yield name[:-4], np.uint8(mask[::4, ::4])


def endoscopy():
    ref_dir, pred_dir = fresh("endoscopy", "ref"), fresh("endoscopy", "pred")
    fresh("endoscopy", "expected")
    for index, (stem, ref) in enumerate(kvasir_masks(3)):
        two = ref.copy()
        cols = np.where(ref.any(axis=0))[0]
        two[:, (cols.min() + cols.max()) // 2:] *= 2  # split into two classes
        extra = ref.copy()
        extra[:6, :6] = 2
        full_ref = np.ones((9, 9), np.uint8)
        full_pred = full_ref.copy()
        full_pred[:2, :] = 0
        variants = {
            "same": (ref, ref),
            "shift": (ref, np.roll(ref, (3, -2), axis=(0, 1))),
            "eroded": (ref, np.uint8(ndimage.binary_erosion(ref, iterations=2))),
            "dilated": (ref, np.uint8(ndimage.binary_dilation(ref, iterations=3))),
            "empty": (ref, np.zeros_like(ref)),
            "extra": (ref, extra),
            "twoclass": (two, per_label(two, ndimage.binary_erosion)),
            "missing": (two, np.where(two == 2, 0, two).astype(np.uint8)),
        }
        if index == 0:
            variants["nobackground"] = (full_ref, full_pred)
        for name, (r, p) in variants.items():
            io.imsave(os.path.join(ref_dir, f"{stem[:8]}_{name}.png"), r, check_contrast=False)
            io.imsave(os.path.join(pred_dir, f"{stem[:8]}_{name}.png"), p, check_contrast=False)
    labels = {"background": 0, "polyp": 1, "second": 2}
    write_dataset("endoscopy", labels, ".png")
    for script, out in (("endoscopy_DSC_Eval.py", "dsc"), ("endoscopy_NSD_Eval.py", "nsd")):
        run_official(script, "endoscopy", out)


def ignore_and_regions():
    for kind in ("ignore", "regions"):
        ref_dir, pred_dir = fresh(kind, "ref"), fresh(kind, "pred")
        fresh(kind, "expected")
    for stem, ref in kvasir_masks(2):
        with_band = ref.copy()
        with_band[10:18, :] = 2  # ignore band
        pred = np.uint8(ndimage.binary_dilation(ref, iterations=2))
        io.imsave(os.path.join(HERE, "ignore", "ref", f"{stem[:8]}.png"), with_band, check_contrast=False)
        io.imsave(os.path.join(HERE, "ignore", "pred", f"{stem[:8]}.png"), pred, check_contrast=False)
        two = ref.copy()
        cols = np.where(ref.any(axis=0))[0]
        two[:, (cols.min() + cols.max()) // 2:] *= 2
        io.imsave(os.path.join(HERE, "regions", "ref", f"{stem[:8]}.png"), two, check_contrast=False)
        io.imsave(os.path.join(HERE, "regions", "pred", f"{stem[:8]}.png"),
                  np.roll(two, 2, axis=1), check_contrast=False)
    write_dataset("ignore", {"background": 0, "polyp": 1, "ignore": 2}, ".png")
    write_dataset("regions", {"background": 0, "whole": [1, 2], "second": 2}, ".png",
                  regions_class_order=[1, 2])


# ---------------------------------------------------------------- cells
def semantic(instances):
    boundary = segmentation.find_boundaries(instances, mode="inner")
    out = np.uint8(instances > 0)
    out[boundary] = 2
    return out


def per_instance(instances, op):
    out = np.zeros_like(instances)
    for value in np.unique(instances)[1:]:
        mask = op(instances == value)
        out[mask & (out == 0)] = value
    return out


def cells():
    ref_dir, pred_dir = fresh("cells", "ref"), fresh("cells", "pred")
    fresh("cells", "expected")
    sources = {
        "cell_00528": tifffile.imread(os.path.join(DATA, "neurips-cellseg-sample", "labels", "cell_00528_label.tiff")),
        "cell_00849": tifffile.imread(os.path.join(DATA, "neurips-cellseg-sample", "labels", "cell_00849_label.tiff"))[128:384, 128:384],
        "kc167_095": io.imread(os.path.join(DATA, "scellseg-cells", "Kc167", "095_masks.png")).astype(np.int16)[:200, :200],
    }
    rng = np.random.default_rng(1)
    for stem, gt in sources.items():
        gt = gt.astype(np.int16)
        ids = np.unique(gt)[1:]
        dropped = np.isin(gt, rng.choice(ids, len(ids) // 2, replace=False))
        variants = {
            "same": gt,
            "shift": np.roll(gt, (3, 2), axis=(0, 1)),
            "eroded": per_instance(gt, lambda m: ndimage.binary_erosion(m, iterations=2)),
            "dilated": per_instance(gt, lambda m: ndimage.binary_dilation(m, iterations=2)),
            "missing": np.where(dropped, 0, gt),
            "empty": np.zeros_like(gt),
        }
        for name, pred in variants.items():
            tifffile.imwrite(os.path.join(ref_dir, f"{stem}_{name}_label.tiff"), gt, compression="zlib")
            io.imsave(os.path.join(pred_dir, f"{stem}_{name}.png"), semantic(pred), check_contrast=False)
    write_cell_dataset("cells")
    run_cell_official()


def write_cell_dataset(kind):
    # The cell cases are scored by the challenge script only; these files let `evaluate`
    # read the labels and the file ending.
    dataset = {"labels": {"background": 0, "interior": 1, "boundary": 2}, "file_ending": ".png",
               "channel_names": {"0": "x"}, "numTraining": 0}
    with open(os.path.join(HERE, kind, "dataset.json"), "w") as f:
        json.dump(dataset, f, indent=4)
    with open(os.path.join(HERE, kind, "plans.json"), "w") as f:
        json.dump({"dataset_name": kind, "plans_name": "nnUNetPlans", "configurations": {}}, f, indent=4)


def large_cells():
    """One 5000x5000 case, scored in 2000x2000 tiles by the official script."""
    ref_dir, pred_dir = fresh("cells_large", "ref"), fresh("cells_large", "pred")
    fresh("cells_large", "expected")
    tile = tifffile.imread(os.path.join(DATA, "neurips-cellseg-sample", "labels", "cell_00528_label.tiff")).astype(np.int16)
    gt = np.zeros((5000, 5000), np.int16)
    offset = 0
    for y, x in ((1900, 1900), (100, 3950), (4850, 100), (2600, 2600)):
        h, w = min(200, 5000 - y), min(200, 5000 - x)
        patch = tile[:h, :w]
        gt[y:y + h, x:x + w] = np.where(patch > 0, patch + offset, 0)
        offset += 100
    pred = np.roll(gt, 1, axis=1)
    tifffile.imwrite(os.path.join(ref_dir, "big_label.tiff"), gt, compression="zlib")
    io.imsave(os.path.join(pred_dir, "big.png"), semantic(pred), check_contrast=False)
    write_cell_dataset("cells_large")
    run_cell_official("cells_large")


# ---------------------------------------------------------------- official runs
def write_dataset(kind, labels, ending, **extra):
    dataset = {"labels": labels, "file_ending": ending, "channel_names": {"0": "x"}, "numTraining": 0}
    dataset.update(extra)
    with open(os.path.join(HERE, kind, "dataset.json"), "w") as f:
        json.dump(dataset, f, indent=4)
    with open(os.path.join(HERE, kind, "plans.json"), "w") as f:
        json.dump({"dataset_name": kind, "plans_name": "nnUNetPlans", "configurations": {}}, f, indent=4)
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder2
    compute_metrics_on_folder2(
        os.path.join(HERE, kind, "ref"), os.path.join(HERE, kind, "pred"),
        os.path.join(HERE, kind, "dataset.json"), os.path.join(HERE, kind, "plans.json"),
        os.path.join(HERE, kind, "expected", "nnunet_summary.json"), num_processes=1)


def run_official(script, kind, out):
    ref, pred = os.path.join(HERE, kind, "ref"), os.path.join(HERE, kind, "pred")
    target = os.path.join(HERE, kind, "expected", f"official_{out}.csv")
    # The endoscopy scripts stop on an image with no label at all, so none is included.
    subprocess.run([OFFICIAL_PYTHON, script, "--gt_path", ref, "--seg_path", pred,
                    "--save_path", target], cwd=OFFICIAL, check=True, capture_output=True)
    # The same script with its name `round` bound to the identity gives unrounded values.
    unrounded = os.path.join(HERE, kind, "expected", f"official_{out}_unrounded.csv")
    code = ("import runpy,sys; "
            f"sys.argv=['x','--gt_path',{ref!r},'--seg_path',{pred!r},'--save_path',{unrounded!r}]; "
            f"runpy.run_path({script!r}, init_globals={{'round': lambda x, n=None: x}}, "
            "run_name='__main__')")
    subprocess.run([OFFICIAL_PYTHON, "-c", code], cwd=OFFICIAL, check=True, capture_output=True)


def run_cell_official(kind="cells"):
    ref, pred = os.path.join(HERE, kind, "ref"), os.path.join(HERE, kind, "pred")
    subprocess.run([OFFICIAL_PYTHON, "compute_cell_metric.py", "-g", ref, "-s", pred,
                    "-o", os.path.join(HERE, kind, "expected"), "-n", "official_f1"],
                   cwd=OFFICIAL, check=True, capture_output=True)


if __name__ == "__main__":
    abdomen()
    endoscopy()
    ignore_and_regions()
    cells()
    if "--no-large" not in sys.argv:
        large_cells()
