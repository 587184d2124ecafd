"""The guide's own local validator, `validate_dda_package`, copied verbatim from
spec/byom-guide.md ("Testing Locally") as the reference the benchmark compares against.

    python bench/guide_validate.py PACKAGE.tar.gz
"""
import tarfile
import yaml
import json
import os
import sys


def validate_dda_package(tar_path: str):
    """Validate a DDA model package locally."""

    with tarfile.open(tar_path, "r:gz") as tar:
        members = tar.getnames()

        # Check required files
        required = ["config.yaml", "mochi.json", "export_artifacts/manifest.json"]
        for req in required:
            if req not in members:
                print(f"❌ Missing: {req}")
                return False

        # Check for .pt file
        pt_files = [m for m in members if m.endswith(".pt")]
        if not pt_files:
            print("❌ No .pt file found")
            return False

        # Extract and validate
        tar.extractall("/tmp/validate")

        # Validate config.yaml
        with open("/tmp/validate/config.yaml") as f:
            config = yaml.safe_load(f)

        width = config.get("dataset", {}).get("image_width")
        height = config.get("dataset", {}).get("image_height")

        if not width or not height:
            print("❌ Missing image dimensions in config.yaml")
            return False

        # Validate mochi.json
        with open("/tmp/validate/mochi.json") as f:
            mochi = json.load(f)

        input_shape = mochi.get("stages", [{}])[0].get("input_shape")
        if not input_shape or len(input_shape) != 4:
            print("❌ Invalid input_shape in mochi.json")
            return False

        # Check dimension match
        if width != input_shape[3] or height != input_shape[2]:
            print(f"❌ Dimension mismatch: config={width}x{height}, shape={input_shape}")
            return False

        print("✅ Package is valid!")
        print(f"   Input shape: {input_shape}")
        print(f"   Model file: {pt_files[0]}")
        return True


if __name__ == "__main__":
    sys.exit(0 if validate_dda_package(sys.argv[1]) else 1)
