"""Plain torch modules for the five MinMo stages; Triton adapters in model_repository/ wrap them."""
