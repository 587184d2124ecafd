//! Building a valid package from a bare `.pt` and declared metadata (used by `byom pack` and the
//! browser's package builder).
