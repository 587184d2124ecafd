"""Run by the torch 1.8.0 interpreter: every operator schema it registers, as JSON.

tools/torch_ops/extract.py --verify-registry 1.8 FILE checks the generated operator table
against it (tests/torch18/check.sh): nothing the table dates after 1.8 may be registered here.
"""
import json

import torch

print(json.dumps({"version": torch.__version__, "schemas": [str(s) for s in torch._C._jit_get_all_schemas()]}))
