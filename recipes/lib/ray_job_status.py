"""Print a Ray job's status as Ray's job API reports it (SUCCEEDED, FAILED, STOPPED, ...); exit 0 only
for SUCCEEDED. The run script reads this word instead of searching `ray job status`'s text, whose last
lines for a failed job include the job's own log lines (a job that printed "succeeded" and failed)."""

import argparse
import sys


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--address", required=True, help="the dashboard URL, http://HOST:PORT")
    p.add_argument("job_id")
    a = p.parse_args()
    try:
        from ray.job_submission import JobSubmissionClient

        status = JobSubmissionClient(a.address).get_job_status(a.job_id)
    except Exception as e:  # noqa: BLE001 (any failure to ask is "unknown", said in one line)
        print(f"UNKNOWN ({type(e).__name__}: {str(e)[:200]})")
        return 1
    word = getattr(status, "value", str(status))
    print(word)
    return 0 if word == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
