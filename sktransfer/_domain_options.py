"""The options of domain adaptation, without importing torch (the CLI's parser reads
them)."""

#: Adaptation losses, alone or summed ("dann+mcc").
ADAPTATION_METHODS = ("dann", "coral", "mcc", "dann+mcc", "coral+mcc")
#: The losses that act on the body's features only: with no trained body layer they do
#: nothing.
FEATURE_METHODS = ("dann", "coral")
#: ``DomainAdaptationClassifier``'s default method, chosen on the shift-family study.
DEFAULT_METHOD = "coral"
ADAPTATION_SCHEDULES = ("ganin", "constant")
