"""Seeds of the five seeded smoke stages, in one place.

The trained smoke duplex predictor reads hidden states of the seeded smoke encoder and backbone, so
the weights build and the duplex training script must draw those stages from the same seeds.
"""

from __future__ import annotations

ENCODER_SEED = 1001
BACKBONE_SEED = 1002
DUPLEX_SEED = 1003
SPEECH_LM_SEED = 1004
VOCODER_SEED = 1005
# Not a stage: the smoke backbone's training run (services.backbone.smoke.train) starts from BACKBONE_SEED.
BACKBONE_TRAIN_SEED = 1006
