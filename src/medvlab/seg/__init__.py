"""3-D segmentation: train, predict, evaluate and export MONAI networks on medical volumes.

``model`` holds the network spec and checkpoints, ``data`` the preprocessing shared by training and
inference, ``train`` the training loop (AMP, resume, DDP by torchrun), ``infer`` sliding-window
prediction and its outputs (NIfTI, DICOM SEG, volumes), ``evaluate`` Dice/HD95 and ``export``
TorchScript/ONNX. Library code only: the CLI, API and UI call it through :mod:`medvlab.services`.
"""
