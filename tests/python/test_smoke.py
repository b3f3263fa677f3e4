"""The C smoke test of the stack's libraries, against the real broker and
database: idempotent lz4 producer, consumer group with manual offset store and
commit, header round trip, and a parameterized libpq round trip."""
import os
import re
import subprocess


def test_c_smoke_against_real_broker_and_database(stack):
    build = os.environ.get("KMS_BUILD", "build")
    proc = subprocess.run([os.path.join(build, "tests", "smoke")], capture_output=True,
                          text=True, timeout=180, env=dict(os.environ, KMS_BOOTSTRAP=stack.bootstrap,
                                                           KMS_DSN=stack.dsn))
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^8 passed, 0 failed$", proc.stdout, re.M), proc.stdout
