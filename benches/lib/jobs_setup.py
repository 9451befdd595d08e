"""Registry entries and a DEVICE_CONNECT job for benches/jobs.sh, and the wait for its end.

    jobs_setup.py API TOKEN ACCOUNT PREFIX N       -> creates devices PREFIX0..PREFIX{N-1} and
                                                     a job targeting them; prints the job id
    jobs_setup.py API TOKEN ACCOUNT --wait ID N    -> polls the job until N targets ended
                                                     (COMPLETED or FAILED); prints the job
"""

import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

CONFIGURATION = (
    "<configurations><configuration><id>org.eclipse.kura.clock.ClockService</id><properties>"
    '<property name="clock.ntp.host" array="false" encrypted="false" type="String">'
    "<value>pool.ntp.org</value></property></properties></configuration></configurations>"
)


def call(api, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def setup(api, token, account, prefix, n):
    ids = [f"{prefix}{i}" for i in range(n)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda c: call(api, token, "POST", f"/api/v1/accounts/{account}/devices",
                                     {"clientId": c}), ids))
    job = call(api, token, "POST", f"/api/v1/accounts/{account}/jobs", {
        "name": "bench: clock service on Device Connect",
        "targets": ids,
        "steps": [{"type": "configuration", "configuration": CONFIGURATION}],
        "schedule": {"trigger": "DEVICE_CONNECT"},
        "maxAttempts": 3,
        "stepTimeout": 60,
    })
    print(job["id"])


def wait(api, token, account, job_id, n):
    deadline = time.time() + 600
    while True:
        job = call(api, token, "GET", f"/api/v1/accounts/{account}/jobs/{job_id}")
        c = job["targetCounts"]
        if c["COMPLETED"] + c["FAILED"] >= n or time.time() > deadline:
            job.pop("targets", None)
            job.pop("steps", None)
            print(json.dumps(job))
            return
        time.sleep(0.2)


if __name__ == "__main__":
    api, token, account = sys.argv[1:4]
    if sys.argv[4] == "--wait":
        wait(api, token, account, sys.argv[5], int(sys.argv[6]))
    else:
        setup(api, token, account, sys.argv[4], int(sys.argv[5]))
