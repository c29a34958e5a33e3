"""Image classification trees (torchvision ImageFolder: <path>/train/<class>/*.jpg and
<path>/val/<class>/*.jpg), streamed from disk as StreamingData. ImageNet is one such tree."""
from __future__ import annotations

import os

from fa_bench.data.errors import DataConfigError, DataCorruptError, DataFileNotFoundError
from fa_bench.data.registry import StreamingData, default_root, register

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def transforms(size: int, mean, std):
    """(train, eval): the standard ImageNet recipe. Eval resizes the short side to size*256/224 (256
    for 224, 342 for 299) before the centre crop, the same ratio at every size."""
    from torchvision import transforms as T

    normalize = T.Normalize(list(mean), list(std))
    train = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    evaluate = T.Compose([T.Resize(int(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(), normalize])
    return train, evaluate


def _missing(path: str, problem: str, imagenet: bool) -> DataFileNotFoundError:
    where = ("set FA_DATA (or pass data.root=...) to the folder holding imagenet/, or dataset.path=... to the "
             "tree itself" if imagenet else "pass dataset.path=... (the folder holding train/ and val/)")
    msg = (f"image tree not usable: {problem} (looked in {path}). It must hold train/ and val/, each with one "
           f"sub-folder per class containing that class's images (torchvision ImageFolder layout, the same "
           f"class folders in both); {where}.")
    if imagenet:
        msg += (" For ImageNet (ILSVRC 2012): download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from "
                "https://image-net.org (registration needed), extract the training tar's per-class tars into "
                "train/<wnid>/, and sort the validation images into val/<wnid>/ (e.g. with valprep.sh from "
                "the pytorch/examples imagenet folder).")
    return DataFileNotFoundError(msg)


def _tree(path, size, mean, std, num_workers, n_classes, imagenet) -> StreamingData:
    from torchvision.datasets import ImageFolder

    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DataConfigError(f"dataset.size={size!r}: valid: an integer >= 1 (the crop's side in pixels).")
    path = os.path.abspath(path)
    for split in ("train", "val"):
        if not os.path.isdir(os.path.join(path, split)):
            raise _missing(path, f"no folder {os.path.join(path, split)}", imagenet)
    train_tf, eval_tf = transforms(size, mean, std)
    try:
        train = ImageFolder(os.path.join(path, "train"), transform=train_tf)
        val = ImageFolder(os.path.join(path, "val"), transform=eval_tf)
    except FileNotFoundError as err:  # ImageFolder: no class folders, or a class folder without images
        raise _missing(path, str(err), imagenet) from err
    if train.classes != val.classes:
        only = sorted(set(train.classes) ^ set(val.classes))
        raise DataCorruptError(
            f"image tree {path}: train/ and val/ have different class folders ({len(train.classes)} vs "
            f"{len(val.classes)}; in one only: {', '.join(only[:10])}{' ...' if len(only) > 10 else ''}). "
            f"Labels are class-folder indices, so both must list the same classes: add or remove folders.")
    if n_classes is not None and n_classes != len(train.classes):
        raise DataConfigError(
            f"dataset.n_classes={n_classes} but {path} holds {len(train.classes)} class folders; set "
            f"dataset.n_classes={len(train.classes)} (or null: taken from the tree), or fix the tree.")
    return StreamingData(train, val, len(train.classes), (3, size, size), num_workers)


@register
def imagefolder(path=None, size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, num_workers=2, n_classes=None,
                root=None):
    """Any ImageFolder tree with train/ and val/; ``n_classes`` null: the number of class folders.
    ``root`` (the data root every loader receives) is unused: the tree is named by ``path``."""
    if path is None:
        raise DataConfigError("dataset=imagefolder needs dataset.path=<folder holding train/ and val/>.")
    return _tree(path, size, mean, std, num_workers, n_classes, imagenet=False)


@register
def imagenet(path=None, size=299, mean=IMAGENET_MEAN, std=IMAGENET_STD, num_workers=2, n_classes=1000, root=None):
    """ILSVRC 2012 as an ImageFolder tree, by default <data root>/imagenet (train/<wnid>/, val/<wnid>/).
    299-pixel crops: Moskovitz et al.'s Inception-style nets."""
    path = path or os.path.join(root or default_root(), "imagenet")
    return _tree(path, size, mean, std, num_workers, n_classes, imagenet=True)
