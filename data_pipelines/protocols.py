"""The test protocols, the training presets and the automatic augmentations by name (no DALI here: the commands check
a name before their heavy imports, and a run without DALI, the GPU check's first stage, reads them too).

center: one centre crop; tencrop: the four corners and the centre, each also mirrored (AlexNet section 4.1);
dense: the whole image at one test scale, the network applied fully convolutionally (models/dense.py);
multiscale: dense at several scales; the dense views differ in size from image to image, so each batch is padded to
its largest and the loader cuts every image back out (dali_loader.py). ``augment.py`` builds them.
"""

EVAL_PROTOCOLS = ("center", "tencrop", "dense", "multiscale")
# the training presets (augment.py's train_images), and those that place a digit in a larger field (LeNet-5's input)
PRESETS = ("alexnet", "resnet", "inception", "digits", "mnist", "mnist_distorted")
DIGIT_PRESETS = ("digits", "mnist", "mnist_distorted")
DENSE_PROTOCOLS = ("dense", "multiscale")
# data.auto_augment's choices besides null: TrivialAugment Wide (Müller & Hutter 2021; torchvision's --auto-augment
# ta_wide), DALI's own (nvidia.dali.auto_aug), on the decoded image before normalisation (augment.py)
AUTO_AUGMENTS = ("trivial_augment",)
