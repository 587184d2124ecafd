//! Streaming gzip + tar walk with the hostile-entry policy and limits.
