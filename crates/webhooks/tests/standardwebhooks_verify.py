# Verifies webhook requests with the reference implementation, the PyPI
# `standardwebhooks` package. Shared by the webhooks crate's signature test
# and the CLI's end-to-end test (both include this file).
#
# stdin: a JSON array of {"secret", "body_hex", "headers": {webhook-id,
# webhook-timestamp, webhook-signature}}; stdout: one line per case, "ok" or
# "fail <exception>". Exit 77 when the package is not installed.
import json
import sys

try:
    from standardwebhooks.webhooks import Webhook
except ImportError:
    sys.exit(77)

for case in json.load(sys.stdin):
    try:
        Webhook(case["secret"]).verify(bytes.fromhex(case["body_hex"]), case["headers"], json_parse=False)
        print("ok")
    except Exception as e:  # noqa: BLE001 - the verdict is the output
        print("fail " + type(e).__name__)
