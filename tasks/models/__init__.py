"""Models: any classifier by name with its weights and preprocessing, its layers, layouts and precision."""
