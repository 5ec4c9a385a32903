"""`tuneloop demo`: the whole continuous-training loop on this machine, no AWS account.

Synthesizes the CDK app's `local` stage, deploys it into the embedded emulator, drops the
example data, and lets the platform do the rest: ingestion, two retrain runs (train,
evaluate, gate, register, deploy), a prompt to the endpoint, an injected fault, the alarm,
and the rollback to the last-known-good version; then the watch: traffic in another
language about another topic, the drift check, its alarm, and the incidents the demo's
alarms opened. Exits 0 only if every stage did its job.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from tuneloop.local.emulator import EnforcerFactory, policy_enforcer
from tuneloop.local.iam.usage import as_json
from tuneloop.local.platform import REPO_ROOT, LocalPlatform, PlatformError, RunResult

EXAMPLES = REPO_ROOT / "examples"
PERMISSIONS_REPORT = "permissions.json"  # in the work dir: grants per role, refusals
DEMO_PROMPT = "How do I reset the Atlas Router?"
# What people start asking after the rollback: German questions about cooking, not English
# questions about Acme's products (the training data).
SHIFTED_PROMPTS = EXAMPLES / "watch" / "shifted_prompts.txt"
WATCH_WINDOW_HOURS = 1
# Lines from the training and evaluation jobs worth showing while they run.
_PROGRESS = re.compile(r"(step \d+|convert|cach|loss|acc|items|scor|load|error)", re.IGNORECASE)


@dataclass
class Summary:
    timings: list[tuple[str, float]] = field(default_factory=list)
    drops: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    answers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    rollback: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, Any] = field(default_factory=dict)
    incidents: list[dict[str, Any]] = field(default_factory=list)


def _say(message: str) -> None:
    print(message, flush=True)


@contextmanager
def _stage(summary: Summary, name: str) -> Iterator[None]:
    _say(f"\n== {name}")
    started = time.monotonic()
    yield
    seconds = time.monotonic() - started
    summary.timings.append((name, seconds))
    _say(f"   ({name}: {seconds:.1f} s)")


_TQDM = re.compile(r"\d+%\|")


def _job_log(job: str, line: str) -> None:
    if _PROGRESS.search(line) and not _TQDM.search(line) and "train_loss=" not in line:
        _say(f"   [{job.rsplit('-', 1)[-1]}] {line[:160]}")


def _tar_member_json(s3_uri: str, member: str) -> Any:
    bucket, _, key = s3_uri[len("s3://") :].partition("/")
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        for candidate in archive.getmembers():
            if candidate.name.lstrip("./") == member:
                extracted = archive.extractfile(candidate)
                if extracted is not None:
                    return json.load(extracted)
    raise PlatformError(f"{member} not found in {s3_uri}")


def _describe_run(platform: LocalPlatform, run: RunResult) -> dict[str, Any]:
    """What a run produced: training loss, scores, the gate's decision."""
    result: dict[str, Any] = {"version": run.name, "status": run.status}
    train = run.output.get("train") or {}
    if train.get("model_data"):
        report_uri = train["model_data"].replace("model.tar.gz", "output.tar.gz")
        report = _tar_member_json(report_uri, "training_report.json")
        result["final_loss"] = report.get("final_loss")
        result["train_steps"] = report.get("steps")
    evaluation = run.output.get("evaluation") or {}
    if evaluation.get("job_name"):
        uri = (
            f"{evaluation['output_path'].rstrip('/')}/{evaluation['job_name']}/output/output.tar.gz"
        )
        scores = _tar_member_json(uri, "evaluation.json")["results"]
        result["scores"] = {
            model: {suite: headline_score(r) for suite, r in suites.items()}
            for model, suites in scores.items()
        }
    gate = run.output.get("gate") or {}
    if gate.get("decision_s3_uri"):
        decision = platform.read_json(gate["decision_s3_uri"])
        result["approved"] = decision.get("approved")
        result["reasons"] = decision.get("reasons", [])
    return result


def headline_score(suite_result: dict[str, Any]) -> str:
    """The number a reader looks for first: accuracy, or perplexity where lower is better."""
    if "acc" in suite_result:
        return f"acc {float(suite_result['acc']):.3f}"
    for metric in suite_result.get("lower_is_better", []):
        if metric in suite_result:
            return f"{metric} {float(suite_result[metric]):.2f}"
    numbers = {  # counts and standard errors are not scores
        k: v
        for k, v in suite_result.items()
        if isinstance(v, int | float) and not k.startswith("n_") and not k.endswith("_stderr")
    }
    return ", ".join(f"{k} {float(v):.3f}" for k, v in sorted(numbers.items())[:2]) or "no score"


def score_table(runs: list[dict[str, Any]]) -> list[str]:
    """Each suite's headline score for the base model, then every version, side by side:
    the base comes from the first run (a first model is evaluated beside its base)."""
    columns: list[tuple[str, dict[str, str]]] = []
    if runs and "base" in runs[0].get("scores", {}):
        columns.append(("base", runs[0]["scores"]["base"]))
    columns += [(run["version"], run["scores"]["candidate"]) for run in runs if run.get("scores")]
    if not columns:
        return []
    suites = sorted({suite for _, scores in columns for suite in scores})
    width = max(len(s) for s in ("suite", *suites)) + 2
    cell = 2 + max(
        10, *(len(name) for name, _ in columns), *(len(v) for _, c in columns for v in c.values())
    )
    lines = ["suite".ljust(width) + "".join(name.ljust(cell) for name, _ in columns)]
    for suite in suites:
        row = "".join(scores.get(suite, "-").ljust(cell) for _, scores in columns)
        lines.append(suite.ljust(width) + row)
    return [line.rstrip() for line in lines]


def _reasons(drop: dict[str, Any]) -> str:
    reasons = {reason: int(count) for reason, count in drop.get("reasons", {}).items()}
    return f" {reasons}" if reasons else ""


def _drop_and_run(
    platform: LocalPlatform, summary: Summary, files: list[Path], label: str
) -> dict[str, Any]:
    known = {e["executionArn"] for e in platform.executions()}
    with _stage(summary, f"ingest {label}"):
        platform.drop_files(files, dataset="support")
        for drop in platform.drops():
            if drop["key"].rsplit("/", 1)[-1] in {f.name for f in files}:
                summary.drops.append(drop)
                _say(
                    f"   {drop['key']}: received {drop['received']}, stored {drop['stored']}, "
                    f"duplicate {drop['duplicate']}, "
                    f"near-duplicate {drop.get('near_duplicate', 0)}, "
                    f"quarantined {drop['quarantined']}" + _reasons(drop)
                )
    with _stage(summary, f"retrain {label}"):
        run = platform.follow_run(platform.wait_for_new_run(known))
        described = _describe_run(platform, run)
        summary.runs.append(described)
        if run.status != "SUCCEEDED":
            raise PlatformError(
                f"retrain {label} ended {run.status}: {run.error} {run.cause[:500]}"
            )
        production = platform.control_item("production") or {}
        if production.get("model_version") != run.name:
            raise PlatformError(
                f"retrain {label} succeeded but production is {production.get('model_version')}, "
                f"not {run.name}; gate: {described.get('reasons')}"
            )
        _say(f"   deployed {run.name}; gate: " + "; ".join(described.get("reasons", [])))
    return described


def _ask(platform: LocalPlatform, summary: Summary, label: str) -> dict[str, Any]:
    answer = platform.invoke(DEMO_PROMPT)
    summary.answers.append((label, answer))
    _say(f"   Q: {DEMO_PROMPT}")
    text = " ".join(str(answer.get("generated_text", "")).split())
    _say(f"   A ({answer.get('model_version')}): {text[:200]}")
    return answer


def _fault_and_rollback(platform: LocalPlatform, summary: Summary, good: str, bad: str) -> None:
    with _stage(summary, "fault and rollback"):
        _say(f"   crashing the serving container of {bad}")
        platform.crash_endpoint()
        failures = 0
        deadline = time.monotonic() + 120
        while not platform.emulator.alarms.fired and time.monotonic() < deadline:
            try:
                platform.invoke(DEMO_PROMPT, max_new_tokens=4)
            except Exception:  # a failing endpoint is what this stage provokes
                failures += 1
            time.sleep(0.5)
        if not platform.emulator.alarms.fired:
            raise PlatformError("the error alarm did not fire within 120 s")
        alarm = platform.emulator.alarms.fired[0]["AlarmName"]
        _say(f"   {failures} failed requests; alarm {alarm} → ALARM; rollback running")
        production = _wait_for_production(platform, good, timeout=120)
        config = production["endpoint_config_name"]
        platform.wait_for_endpoint(
            lambda e: e["EndpointStatus"] == "InService" and e["EndpointConfigName"] == config,
            timeout=600,
        )
        bad_item = platform.model_version(bad) or {}
        summary.rollback = {
            "alarm": alarm,
            "failed_requests": failures,
            "restored": good,
            "rolled_back": bad,
            "rolled_back_status": bad_item.get("status"),
        }
        answer = _ask(platform, summary, "after rollback")
        if answer.get("model_version") != good:
            raise PlatformError(
                f"after rollback the endpoint answers from {answer.get('model_version')}"
            )


def _watch(platform: LocalPlatform, summary: Summary, serving: str) -> None:
    """Shifted traffic → the drift check → its alarm → the incidents of the demo."""
    from tuneloop.incidents.store import list_incidents
    from tuneloop.operations.names import PlatformNames
    from tuneloop.watch.drift_service import run_drift_check_now

    with _stage(summary, "watch: drift, incidents"):
        prompts = [p for p in SHIFTED_PROMPTS.read_text(encoding="utf-8").splitlines() if p]
        for prompt in prompts:
            platform.invoke(prompt, max_new_tokens=4)
        _say(f"   sent {len(prompts)} cooking questions in German to {serving}")
        result = run_drift_check_now("local", hours=WATCH_WINDOW_HOURS)
        _say(f"   drift check of {result.get('prompts')} prompts: {result.get('summary')}")
        if not result.get("drift_detected"):
            raise PlatformError(f"the drift check saw no drift: {result.get('summary')}")
        _say(f"   report: {result.get('report_uri')}")
        table = PlatformNames.for_stage("local").require("incidents_table")
        found: list[Any] = []

        def opened() -> bool:
            found[:] = list_incidents(table, limit=20)
            return any(i.metric.get("name") == "DriftDetected" for i in found)

        deadline = time.monotonic() + 90
        while not opened() and time.monotonic() < deadline:
            time.sleep(0.5)
        if not any(i.metric.get("name") == "DriftDetected" for i in found):
            raise PlatformError("the drift alarm opened no incident within 90 s")
        summary.drift = {"summary": result.get("summary"), "report": result.get("report_uri")}
        _say(f"   incidents opened during the demo ({len(found)}):")
        for incident in reversed(found):
            done = "; ".join(str(a.get("text")) for a in incident.automatic_actions) or (
                incident.automatic_response or "notification only"
            )
            row = {
                "id": incident.incident_id,
                "alarm": incident.summary or incident.alarm_name,
                "version": incident.model_version,
                "done": done,
                "runbook": incident.runbook,
            }
            summary.incidents.append(row)
            _say(f"   {row['id']}: {row['alarm']} (version {row['version'] or '-'}); {done}")


def _wait_for_production(platform: LocalPlatform, version: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        production = platform.control_item("production") or {}
        if production.get("model_version") == version:
            return production
        time.sleep(0.5)
    raise PlatformError(f"production did not return to {version} within {timeout:.0f} s")


def _rounded(value: Any) -> str:
    return f"{float(value):.3f}" if isinstance(value, int | float) else str(value)


def _print_summary(summary: Summary, total: float) -> None:
    _say("\n== Summary")
    stored = sum(int(d["stored"]) for d in summary.drops)
    duplicate = sum(int(d["duplicate"]) for d in summary.drops)
    near_duplicate = sum(int(d.get("near_duplicate", 0)) for d in summary.drops)
    quarantined = sum(int(d["quarantined"]) for d in summary.drops)
    received = sum(int(d["received"]) for d in summary.drops)
    _say(
        f"records: received {received}, stored {stored}, duplicate {duplicate}, "
        f"near-duplicate {near_duplicate}, quarantined {quarantined}"
    )
    for run in summary.runs:
        _say(
            f"run {run['version']}: {run['status']}, train loss {_rounded(run.get('final_loss'))}, "
            f"scores {run.get('scores')}, gate {'approved' if run.get('approved') else 'rejected'}"
        )
        for reason in run.get("reasons", []):
            _say(f"    - {reason}")
    table = score_table(summary.runs)
    if table:
        _say("scores, base → each version:")
        for line in table:
            _say(f"    {line}")
    for label, answer in summary.answers:
        text = " ".join(str(answer.get("generated_text", "")).split())
        _say(f"answer {label} from {answer.get('model_version')}: {text[:80]!r}")
    if summary.rollback:
        r = summary.rollback
        _say(
            f"rollback: alarm {r['alarm']} after {r['failed_requests']} failed requests; "
            f"{r['rolled_back']} → {r['rolled_back_status']}, "
            f"production restored to {r['restored']}"
        )
    if summary.drift:
        _say(f"drift: {summary.drift['summary']}; report {summary.drift['report']}")
    for row in summary.incidents:
        _say(f"incident {row['id']}: {row['alarm']}; {row['done']}; runbook {row['runbook']}")
    _say("wall time per stage:")
    for name, seconds in summary.timings:
        _say(f"    {name:<24} {seconds:7.1f} s")
    _say(f"    {'total':<24} {total:7.1f} s")


def _permissions(platform: LocalPlatform, work_dir: Path) -> None:
    """The grants report (per role: exercised, never exercised) and every refusal."""
    reports = platform.emulator.permission_report()
    path = work_dir / PERMISSIONS_REPORT
    path.write_text(as_json(reports), encoding="utf-8")
    exercised = sum(len(r.exercised) for r in reports)
    unused = sum(len(r.never_exercised) for r in reports)
    denials = platform.emulator.enforcer.denials
    mode = "enforced" if platform.emulator.enforcer.enabled else "NOT enforced (logged only)"
    _say(
        f"\n== Permissions ({mode}): {len(reports)} roles, {exercised} grants exercised, "
        f"{unused} never exercised, {len(denials)} requests refused; report {path}"
    )
    for report in reports:
        if report.exercised or report.denied:
            _say(
                f"   {report.role.rsplit('/', 1)[-1]}: {len(report.exercised)} exercised, "
                f"{len(report.never_exercised)} never exercised"
            )
    for denial in denials:
        _say(f"   refused {denial.operation} ({denial.caller}): {denial.message}")


def run_demo(
    work_dir: Path,
    *,
    base_model: str | None = None,
    assembly: Path | None = None,
    enforce_permissions: bool | None = None,
    make_enforcer: EnforcerFactory = policy_enforcer,
    before_stop: Callable[[LocalPlatform], None] | None = None,
) -> int:
    """The whole loop; 0 only if every stage did its job.

    ``assembly``: deploy this cloud assembly instead of synthesizing. ``before_stop`` sees
    the platform after the loop (or its failure), while the emulator still runs.
    """
    started = time.monotonic()
    summary = Summary()
    # Each demo starts from a clean emulator; the converted base model is cached elsewhere.
    shutil.rmtree(work_dir, ignore_errors=True)
    context = {"stage": "local", "retrain_threshold": "10"}
    if base_model:
        context["base_model"] = base_model
    platform = LocalPlatform(
        work_dir,
        context=context,
        log=_say,
        on_job_log=_job_log,
        enforce_permissions=enforce_permissions,
        make_enforcer=make_enforcer,
    )
    failed = False
    try:
        with _stage(summary, "deploy" if assembly else "synth and deploy"):
            platform.start()
            resources = platform.deploy(assembly)
            platform.upload_benchmarks(sorted((EXAMPLES / "benchmarks").glob("*.jsonl")))
            _say(f"   state machine {resources.state_machine_arn.rsplit(':', 1)[-1]}")
        round1 = EXAMPLES / "drops" / "round1"
        # The JSONL drop last: it is the one that crosses the retrain threshold.
        files = sorted(round1.iterdir(), key=lambda p: (p.suffix == ".jsonl", p.name))
        first = _drop_and_run(platform, summary, files, "round 1")
        with _stage(summary, "ask the endpoint"):
            _ask(platform, summary, "version 1")
        second = _drop_and_run(
            platform, summary, sorted((EXAMPLES / "drops" / "round2").iterdir()), "round 2"
        )
        _fault_and_rollback(platform, summary, good=first["version"], bad=second["version"])
        _watch(platform, summary, serving=first["version"])
    except PlatformError as exc:
        failed = True
        _say(f"\nDEMO FAILED: {exc}")
        _say(f"logs: {work_dir / 'emulator' / 'logs'} and {work_dir / 'emulator' / 'jobs'}")
    finally:
        if platform.deployment is not None:
            _permissions(platform, work_dir)
            if before_stop is not None:
                before_stop(platform)
        platform.stop()
    if failed:
        return 1
    _print_summary(summary, time.monotonic() - started)
    return 0
