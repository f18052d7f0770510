"""A client generated from the served /openapi.json must build and work (X4).

Generates a Python client with openapi-python-client, imports it, and uses it
for one upload (PUT /v1/artifacts?ref=COLL/NAME with a body) and one search
(GET /v1/search?q=...). Called by .ci/schemathesis.sh with KX_BASE (the
server), KX_TOKEN (a key that may write) and KX_WORK (a scratch directory).
"""

import importlib
import io
import json
import os
import subprocess
import sys
import urllib.request

base = os.environ["KX_BASE"]
token = os.environ["KX_TOKEN"]
work = os.path.join(os.environ["KX_WORK"], "client")
os.makedirs(work, exist_ok=True)

spec = os.path.join(work, "openapi.json")
with urllib.request.urlopen(f"{base}/openapi.json") as r, open(spec, "wb") as f:
    f.write(r.read())

config = os.path.join(work, "config.json")
with open(config, "w") as f:
    json.dump(
        {
            "project_name_override": "kx-client",
            "package_name_override": "kx_client",
            # binary answers the generator does not know by name are bytes
            "content_type_overrides": {
                "application/zstd": "application/octet-stream",
                "text/markdown": "text/plain",
                "text/event-stream": "text/plain",
                "*/*": "application/octet-stream",
            },
        },
        f,
    )

# --fail-on-warning: a document the generator only half understands is a
# failure here, not a client with missing operations.
subprocess.run(
    [
        sys.executable, "-m", "openapi_python_client", "generate",
        "--path", spec, "--config", config, "--meta", "none",
        "--output-path", os.path.join(work, "kx_client"),
        "--overwrite", "--fail-on-warning",
    ],
    check=True,
    cwd=work,
)
sys.path.insert(0, work)

from kx_client import AuthenticatedClient  # noqa: E402
from kx_client.types import File  # noqa: E402

put_artifact = importlib.import_module("kx_client.api.artifacts.put_artifact")
search = importlib.import_module("kx_client.api.search.search")

client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)

content = b"# Generated client\n\nThe generated client uploads this page.\n"
put = put_artifact.sync_detailed(
    client=client, body=File(payload=io.BytesIO(content), mime_type="text/markdown"), ref="handbook/generated-client.md"
)
assert put.status_code in (200, 201), (put.status_code, put.content)
uploaded = put.parsed
assert uploaded is not None, put.content
print("uploaded", uploaded.artifact.collection, uploaded.artifact.name, "revision", uploaded.artifact.revision)

# the index follows the store a moment later
import time  # noqa: E402

for _ in range(50):
    found = search.sync_detailed(client=client, q="generated client")
    assert found.status_code == 200, (found.status_code, found.content)
    names = [h.name for h in found.parsed.hits]
    if "generated-client.md" in names:
        break
    time.sleep(0.2)
assert "generated-client.md" in names, names
print("search found", names)
