"""Errors a user can act on: each names the file or flag at fault and says what to do."""


class ACEInputError(ValueError):
    """Bad input: a missing folder, too few images, an unknown layer, class or model."""


class ModelWeightsMissing(ACEInputError):
    """A model's weights are not on this machine (ACE never downloads at run time)."""
