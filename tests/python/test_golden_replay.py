"""The regression replay: the golden corpus of ``tests/fixtures/golden``
(see ``golden.py``) replayed against this build, and its Results held to the
golden ones.

A fresh world (database, topics of the recorded partition counts, the
corpus's reply topic) is set up from ``setup.json``, a KM-S that trusts only
the corpus's development issuer is started, the recorded requests are
replayed with ``valctl replay --keep-partitions --resign`` (tokens re-minted
by the development key, times moved to now, tokens refused by their form or
signature kept as they were), the Results are recorded with ``valctl
record`` and compared with ``valctl diff`` (processedAt, kmsId, ce_time,
ce_source and ce_id ignored, partitions compared). Any difference fails the
test and prints the diff. A second test changes one golden Result in a copy
and sees that comparison fail.
"""

import base64
import json
import os

import pytest

import golden
import kmswire

P = golden.paths()
DIFF_ARGS = ("--ignore-ce-id", "--partition")


def compare(golden_path, got_path):
    """valctl diff of a golden recording and this run's; raises with the
    diff when they differ."""
    cp = golden.valctl("diff", *DIFF_ARGS, golden_path, got_path, check=False)
    if cp.returncode != 0:
        raise AssertionError(f"the Results differ from {os.path.basename(golden_path)} "
                             f"(valctl diff exited {cp.returncode}):\n{cp.stdout}{cp.stderr}")
    return cp.stdout


@pytest.fixture(scope="module")
def replayed(kms_module_factory, tmp_path_factory):
    """The corpus replayed against a fresh KM-S; its recorded Results."""
    kms = kms_module_factory(start=False, requests_partitions=golden.PARTITIONS["requests"],
                             results_partitions=golden.PARTITIONS["results"])
    stack = kms.stack
    kms.issuers_file = P["issuers"]
    with open(P["setup"]) as f:
        golden.apply_setup(kms, json.load(f))
    golden.reset_reply_topic(stack)
    try:
        kms.start()
        cp = golden.valctl("replay", "-b", stack.bootstrap, "--in", P["requests"],
                           "--topic", kms.requests_topic, "--keep-partitions",
                           "--resign", P["key"], "--iss", golden.ISSUER, "--kid", golden.KID,
                           "--verify-issuers", P["issuers"])
        print(cp.stderr.strip())
        golden.wait_drained(kms)
        out = tmp_path_factory.mktemp("golden")
        got = {"results": str(out / "results.jsonl"), "replies": str(out / "replies.jsonl")}
        golden.record(stack, kms.results_topic, got["results"])
        golden.record(stack, golden.REPLY_TOPIC, got["replies"])
        yield kms, got, cp.stderr
    finally:
        stack.delete_topics([golden.REPLY_TOPIC])


def test_corpus_is_complete():
    """The corpus holds a case for every test of test_pipeline.py and every
    test of test_hostile_values.py but those LEFT_OUT, and its key is
    marked as a development key."""
    with open(P["cases"]) as f:
        cases = json.load(f)
    tests = {c["test"].split("::")[1].split("[")[0] for c in cases["cases"]}
    here = os.path.dirname(os.path.abspath(__file__))
    for module in ("test_pipeline.py", "test_hostile_values.py"):
        with open(os.path.join(here, module)) as f:
            names = {line.split("(")[0][4:] for line in f if line.startswith("def test_")}
        missing = names - tests - set(cases["left_out"])
        assert not missing, f"{module}: no golden case for {sorted(missing)}"
    with open(P["key"]) as f:
        assert f.read().startswith("DEVELOPMENT KEY - NOT A SECRET.")


def test_regression_replay_gives_the_golden_results(replayed):
    kms, got, replay_summary = replayed
    assert " 0 failed" in replay_summary, replay_summary
    compare(P["results"], got["results"])
    compare(P["replies"], got["replies"])


def _change_one_result(src, dst):
    """Copy src with the first SUCCESS Result turned into a FAILURE
    (NOT_ALLOWED_BY_SLA); returns its requestId."""
    with open(src) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        rec = json.loads(line)
        resp = kmswire.decode_response(base64.b64decode(rec["value"]))
        if resp["result"] == "SUCCESS":
            resp.update(result="FAILURE", cause="NOT_ALLOWED_BY_SLA", detail="changed by hand")
            rec["value"] = base64.b64encode(kmswire.encode_response(resp)).decode()
            lines[i] = json.dumps(rec, separators=(",", ":"))
            break
    with open(dst, "w") as f:
        f.write("\n".join(lines) + "\n")
    return resp["requestId"]


def test_a_changed_golden_result_fails_the_regression(replayed, tmp_path):
    _, got, _ = replayed
    changed = tmp_path / "results.jsonl"
    request_id = _change_one_result(P["results"], changed)
    with pytest.raises(AssertionError) as e:
        compare(str(changed), got["results"])
    text = str(e.value)
    assert "valctl diff exited 1" in text, text
    rows = [line for line in text.splitlines() if line.startswith(request_id)]
    assert len(rows) == 1 and "result" in rows[0].split(), text
    assert '"FAILURE"' in rows[0] and '"SUCCESS"' in rows[0], rows
    assert "1 differ, 0 only in A, 0 only in B" in text, text
    # the unchanged golden file still passes
    compare(P["results"], got["results"])
