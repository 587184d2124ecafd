//! The three metadata files (`config.yaml`, `mochi.json`, `manifest.json`) as parsed values.
