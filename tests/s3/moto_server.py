"""A real S3-compatible server for the tests: moto's, on 127.0.0.1.

Authentication is enforced (a wrong key or secret is refused, as on AWS):
the first four requests create a user, its access key, its policy and the
test bucket; every later request must be signed with that key. When ready it
writes the settings the tests read to ENV_FILE as shell exports, then serves
until it is killed.

    python tests/s3/moto_server.py ENV_FILE
"""

import json
import os
import sys
import threading

# Read by moto when it is imported.
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "4"

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

BUCKET = "cairn-test"


def main() -> None:
    env_file = sys.argv[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **client)
    iam.create_user(UserName="cairn")
    key = iam.create_access_key(UserName="cairn")["AccessKey"]
    iam.put_user_policy(
        UserName="cairn",
        PolicyName="all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    s3 = boto3.client(
        "s3",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        **client,
    )
    s3.create_bucket(Bucket=BUCKET)
    tmp = env_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"export CAIRN_TEST_S3_ENDPOINT={endpoint}\n")
        f.write(f"export CAIRN_TEST_S3_BUCKET={BUCKET}\n")
        f.write(f"export CAIRN_TEST_S3_ACCESS_KEY_ID={key['AccessKeyId']}\n")
        f.write(f"export CAIRN_TEST_S3_SECRET_ACCESS_KEY={key['SecretAccessKey']}\n")
    os.replace(tmp, env_file)
    threading.Event().wait()


if __name__ == "__main__":
    main()
