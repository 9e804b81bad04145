"""The demo world: generated images of known parts, with their masks, and the training of its CNN."""
