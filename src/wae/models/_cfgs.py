"""Registry metadata shared by each WAE recipe and its plain baselines (same input, data)."""

CFG_VGG16 = dict(input_size=224, in_chans=3, num_classes=1000, backbone="vgg16")
CFG_R50 = dict(input_size=224, in_chans=3, num_classes=1000, backbone="resnet50")
CFG_S28 = dict(
    input_size=28, in_chans=1, num_classes=10, backbone="small_vgg", model_args={"width": 32}
)
CFG_S64 = dict(
    input_size=64, in_chans=1, num_classes=10, backbone="small_vgg", model_args={"width": 16}
)
CFG_S32 = dict(
    input_size=32, in_chans=3, num_classes=10, backbone="small_vgg", model_args={"width": 32}
)
