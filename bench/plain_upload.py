"""The memory baseline's client: ONE upload written the obvious way with plain requests, in a
fresh process that imports nothing of Ferry, printing its own memory as JSON.

    python -m bench.plain_upload files|encoder|raw --url URL --path FILE --workspace W --object O --project P

- ``files``:   media upload with ``requests.post(files=...)`` (builds the whole body in memory)
- ``encoder``: media upload with requests-toolbelt's ``MultipartEncoder`` (streams)
- ``raw``:     Jira avatar load with the open file as ``data=`` (streams)

Peak growth = VmHWM after the upload - VmRSS just before it (VmHWM reset first), so imports and
the credentials call are not counted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import requests
from requests_toolbelt import MultipartEncoder

BASIC = ("ferry@example.com", "sandbox-token")


def kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def media_target(session: requests.Session, url: str, workspace: str, object_id: str) -> tuple[str, dict[str, str]]:
    creds = session.get(f"{url}/jsm/assets/workspace/{workspace}/v1/attachments/object/{object_id}/credentials",
                        auth=BASIC, timeout=30)
    creds.raise_for_status()
    data = creds.json()
    return f"{data['mediaBaseUrl']}/file", {"Authorization": f"Bearer {data['mediaJwtToken']}",
                                             "X-Client-Id": data["clientId"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["files", "encoder", "raw"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--path", required=True, type=Path)
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--object", required=True)
    parser.add_argument("--project", required=True)
    args = parser.parse_args()
    session = requests.Session()
    path: Path = args.path
    headers: dict[str, str] = {}
    if args.mode == "raw":
        target = f"{args.url}/rest/api/3/universal_avatar/type/project/owner/{args.project}"
        session.get(target, auth=BASIC, timeout=30).raise_for_status()  # warm the connection, as above
    else:
        target, headers = media_target(session, args.url, args.workspace, args.object)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := VmRSS now
    before = kib("VmRSS")
    started = time.perf_counter()
    with open(path, "rb") as stream:
        if args.mode == "files":
            response = session.post(target, params={"name": path.name}, headers=headers, timeout=None,
                                    files={"file": (path.name, stream, "application/octet-stream")})
        elif args.mode == "encoder":
            body = MultipartEncoder(fields={"file": (path.name, stream, "application/octet-stream")})
            response = session.post(target, params={"name": path.name}, data=body, timeout=None,
                                    headers={**headers, "Content-Type": body.content_type})
        else:
            response = session.post(target, params={"x": 0, "y": 0, "size": 0}, data=stream, auth=BASIC,
                                    timeout=None, headers={"Content-Type": "image/png",
                                                           "X-Atlassian-Token": "no-check"})
    seconds = time.perf_counter() - started
    response.raise_for_status()
    print(json.dumps({"rss_before_kib": before, "hwm_kib": kib("VmHWM"), "seconds": seconds,
                      "status": response.status_code}))


if __name__ == "__main__":
    main()
