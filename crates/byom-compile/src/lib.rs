//! Compilation of BYOM packages with libtorch.
