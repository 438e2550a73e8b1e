"""Checks that the S3 test server's create-only put is atomic under a race:
in each round, THREADS clients put the same new key with `If-None-Match: *`
at the same moment, and exactly one must win. Reads the server's settings
from the CAIRN_TEST_S3_* variables (see moto_server.py).

    python tests/s3/conditional_put_race.py [ROUNDS] [THREADS]
"""

import os
import sys
import threading
import time
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ["CAIRN_TEST_S3_ENDPOINT"],
        aws_access_key_id=os.environ["CAIRN_TEST_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["CAIRN_TEST_S3_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    bucket = os.environ["CAIRN_TEST_S3_BUCKET"]
    clients = [client() for _ in range(threads)]
    prefix = f"race-check-{uuid.uuid4().hex[:8]}"
    started = time.time()
    winners_per_round = {}
    for r in range(rounds):
        key = f"{prefix}/{r}"
        barrier = threading.Barrier(threads)
        won = [False] * threads

        def put(i):
            barrier.wait()
            try:
                clients[i].put_object(Bucket=bucket, Key=key, Body=f"writer {i}".encode(), IfNoneMatch="*")
                won[i] = True
            except ClientError as e:
                if e.response["Error"]["Code"] not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise

        workers = [threading.Thread(target=put, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        n = sum(won)
        winners_per_round[n] = winners_per_round.get(n, 0) + 1
    elapsed = time.time() - started
    print(f"{rounds} rounds of {threads} concurrent create-only puts in {elapsed:.1f} s: "
          f"rounds by number of winners {dict(sorted(winners_per_round.items()))}")
    if set(winners_per_round) != {1}:
        sys.exit("the server's conditional put is not atomic: some round had no winner or several")


if __name__ == "__main__":
    main()
