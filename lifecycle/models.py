"""The inspector's own tables: the append-only event log and scenario runs."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.functions import RandomUUID
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models.functions import Now


class Event(models.Model):
    """One thing that happened to a task, from one side. Append-only.

    Rows come from the capture trigger (source ``db``), the ingestor (``broker``, ``api``,
    ``log``) and the scenario probe (``probe``). The schema is documented in the README.

    The table is partitioned by week of ``at`` (migration 0013, ``lifecycle.store.retention``):
    in the database the primary key is (id, at) and a uuid is unique with its ``at``; to
    Django the key is still ``id`` and the uuid unique, which ids and uuids are in practice.
    """

    class Source(models.TextChoices):
        DB = "db"
        BROKER = "broker"
        API = "api"
        PROBE = "probe"
        LOG = "log"

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(unique=True, db_default=RandomUUID())
    task_key = models.TextField()
    source = models.CharField(max_length=16, choices=Source.choices)
    kind = models.CharField(max_length=32)
    status = models.CharField(max_length=64, null=True, blank=True)
    at = models.DateTimeField(db_default=Now())
    received_at = models.DateTimeField(db_default=Now())
    txid = models.BigIntegerField(null=True, blank=True)
    body = models.JSONField(default=dict, db_default={})

    class Meta:
        db_table = "lifecycle_event"
        indexes = [
            models.Index(fields=["task_key", "id"], name="lifecycle_event_task_id"),
            # A long history's outline and windows: a task's events in time order.
            models.Index(fields=["task_key", "at", "id"], name="lifecycle_event_task_at"),
            # The expectations tests state (probe.expect): few rows, read for every task
            # the home page lists that has no scenario run (store.expected_by_task).
            models.Index(
                fields=["task_key", "-id"],
                name="lifecycle_event_expect",
                condition=models.Q(source="probe", kind="expect"),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.source}.{self.kind} {self.task_key} {self.status or ''}"


class Run(models.Model):
    """One execution of a scenario by the probe: submit, poll, verdict."""

    class State(models.TextChoices):
        RUNNING = "running"
        DONE = "done"

    class Verdict(models.TextChoices):
        PASS = "pass"
        FAIL = "fail"

    id = models.BigAutoField(primary_key=True)
    scenario = models.CharField(max_length=64)
    task_key = models.TextField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    verdict = models.CharField(max_length=8, choices=Verdict.choices, null=True, blank=True)
    expected = models.CharField(max_length=64)  # a status (lifecycles.MAX_STATUS)
    observed = models.CharField(max_length=64, null=True, blank=True)
    error = models.TextField(blank=True, default="")
    base_url = models.TextField(blank=True, default="")
    # The JSON body the run submitted: its scenario's, or an edit's (null: none was sent).
    body = models.JSONField(null=True, blank=True)
    # The token of the form that started the run: a double click starts one run, not two.
    request_token = models.CharField(max_length=64, null=True, blank=True, unique=True)
    resubmit_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="resubmits"
    )
    # Who started it: a user's name, "token <name>", or "<os user> (cli)".
    started_by = models.CharField(max_length=200, blank=True, default="")
    # Which process follows the run now ("host:pid:nonce"), and when it last said so: a
    # run whose follower went quiet is adopted by a web process (probe.adopt_orphans).
    follower = models.CharField(max_length=100, blank=True, default="")
    followed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "lifecycle_run"
        ordering = ["-id"]
        indexes = [models.Index(fields=["scenario", "-id"], name="lifecycle_run_scenario")]
        # The roles (lifecycle.people.roles) are groups holding these.
        permissions = [
            ("read_dashboard", "Can read pages, permalinks, timelines and events"),
            ("start_run", "Can start, resubmit and edit-and-run scenarios, and post events"),
            ("manage_capture", "Can manage capture, scenario files and tokens"),
        ]

    def __str__(self) -> str:
        return f"run {self.id} {self.scenario} {self.state} {self.verdict or ''}"


class TaskCheck(models.Model):
    """The checker's findings for one task, kept so the home page can filter by them.

    Recomputed whenever the task's event count or newest id moved since (an event that
    commits late with a lower id still changes the count).
    """

    task_key = models.TextField(primary_key=True)
    event_count = models.IntegerField()
    last_event_id = models.BigIntegerField()
    expected = models.CharField(max_length=64, null=True, blank=True)
    kinds = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    findings = models.JSONField(default=list, blank=True)
    # What the home page's search filters on, kept with the findings (lifecycle.check.maintainer):
    # the current status, the history's first and last times, the latest run's scenario
    # and verdict (none: no run).
    status = models.CharField(max_length=64, null=True, blank=True)
    first_at = models.DateTimeField(null=True, blank=True)
    last_at = models.DateTimeField(null=True, blank=True)
    scenario = models.CharField(max_length=64, null=True, blank=True)
    verdict = models.CharField(max_length=8, null=True, blank=True)
    checked_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "lifecycle_task_check"
        indexes = [
            GinIndex(fields=["kinds"], name="lifecycle_task_check_kinds"),
            models.Index(fields=["-last_event_id"], name="lifecycle_task_check_last"),
            models.Index(fields=["last_at"], name="lifecycle_task_check_last_at"),
            models.Index(
                fields=["task_key"],
                name="lifecycle_task_check_prefix",
                opclasses=["text_pattern_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_key}: {', '.join(self.kinds) or 'no finding'}"


class ImportedTask(models.Model):
    """A task whose events came from an exported timeline file: a read-only copy, under a
    key of its own (``lifecycle.store.imports``). Nothing may add events to it."""

    task_key = models.TextField(primary_key=True)
    original_key = models.TextField()
    source_url = models.TextField(blank=True, default="")
    imported_by = models.CharField(max_length=200, blank=True, default="")
    imported_at = models.DateTimeField(auto_now_add=True)
    event_count = models.IntegerField(default=0)

    class Meta:
        db_table = "lifecycle_imported_task"

    def __str__(self) -> str:
        return f"{self.task_key} (imported copy of {self.original_key})"


class CheckCursor(models.Model):
    """How far through the event table the last pass of the checker over all tasks got."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    checked_through = models.BigIntegerField(default=0)

    class Meta:
        db_table = "lifecycle_check_cursor"

    def __str__(self) -> str:
        return f"checked through event {self.checked_through}"


class Deployment(models.Model):
    """The deployment this database belongs to: one row, made by the first node that starts.
    Its id marks the RabbitMQ namespace the deployment uses (lifecycle/nodes/deployment.py), so that
    another deployment pointed at that namespace by mistake is refused."""

    name = models.CharField(max_length=16, unique=True, default="this")
    deployment_id = models.UUIDField(default=uuid.uuid4, unique=True)
    made_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "lifecycle_deployment"

    def __str__(self) -> str:
        return f"deployment {self.deployment_id}"


class Node(models.Model):
    """A ``lifecycle up`` of the deployment (lifecycle/nodes/heartbeat.py): registered when it
    starts, ``seen_at`` refreshed every few seconds while it runs, ``stopped_at`` set when it
    stops cleanly. One not seen for ``GONE_AFTER`` seconds is gone (killed, or its host
    lost); rows not seen for a day are deleted."""

    name = models.CharField(max_length=200, unique=True)
    roles = ArrayField(models.CharField(max_length=16), default=list)
    address = models.CharField(max_length=300, blank=True, default="")  # its web's URL
    host = models.CharField(max_length=255, blank=True, default="")
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "lifecycle_node"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"node {self.name}"


class WatchedDatabase(models.Model):
    """An application's database with capture installed (``capture install --database``):
    the follower copies its outbox into the event table, after a restart too."""

    name = models.CharField(max_length=200, unique=True)
    # The address as given, password included when it has one: shown only through
    # lifecycle.runtime.database.redact, never on a page, in a log or in an error.
    url = models.TextField()
    added_at = models.DateTimeField(auto_now_add=True)
    # What the follower last found wrong with its capture, for a person, with the command
    # that mends it ("" when nothing), and when it last looked.
    problem = models.TextField(blank=True, default="")
    checked_at = models.DateTimeField(blank=True, null=True)

    class Meta:
        db_table = "lifecycle_watched_database"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiToken(models.Model):
    """A machine's credential for the JSON API (``Authorization: Bearer <token>``).

    Only the SHA-256 of the token is kept; the token itself is printed once, when made
    (``lifecycle token create``). A revoked token stays listed, and is refused.
    """

    class Role(models.TextChoices):
        VIEWER = "viewer"
        RUNNER = "runner"
        MAINTAINER = "maintainer"  # also reads the deployment's status (GET /api/status)

    name = models.CharField(max_length=100, unique=True)
    role = models.CharField(max_length=16, choices=Role.choices)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)  # the token's first characters, to recognise it
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "lifecycle_api_token"
        ordering = ["name"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.role}{', revoked' if self.revoked_at else ''})"


class LoginFailure(models.Model):
    """A login refused for its password (or its unknown name): counted per name and per
    client address within ``LIFECYCLE_LOGIN_WINDOW`` (lifecycle.people.logins). Rows older than
    the window are deleted as new ones come."""

    username = models.CharField(max_length=150)
    address = models.CharField(max_length=64, blank=True)  # "" when no request carried it
    at = models.DateTimeField()

    class Meta:
        db_table = "lifecycle_login_failure"
        indexes = [
            models.Index(fields=["username", "at"]),
            models.Index(fields=["address", "at"]),
            models.Index(fields=["at"]),
        ]

    def __str__(self) -> str:
        return f"{self.username} from {self.address or '?'} at {self.at:%Y-%m-%d %H:%M:%S}"


class LoginLockout(models.Model):
    """A name, or a client address, whose logins are refused until ``until``: it failed
    too often (lifecycle.people.logins). ``lifecycle login lift`` or the admin ends it sooner."""

    class Scope(models.TextChoices):
        USERNAME = "username"
        ADDRESS = "address"

    scope = models.CharField(max_length=8, choices=Scope.choices)
    key = models.CharField(max_length=150)
    failures = models.PositiveIntegerField()  # within the window, when it was locked
    since = models.DateTimeField()
    until = models.DateTimeField()

    class Meta:
        db_table = "lifecycle_login_lockout"
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="lifecycle_login_lockout_once")
        ]
        verbose_name = "login lockout"

    def __str__(self) -> str:
        return f"{self.scope} {self.key} until {self.until:%Y-%m-%d %H:%M:%S} UTC"


class EventQuota(models.Model):
    """Events a token (or a session's user) posted to ``POST /api/events`` in one minute:
    this minute's and the last are kept per holder, no more (lifecycle.people.quotas)."""

    holder = models.CharField(max_length=200)  # Access.who: "token <name>" or a user's name
    minute = models.DateTimeField()  # the minute's start
    events = models.PositiveIntegerField()

    class Meta:
        db_table = "lifecycle_event_quota"
        constraints = [
            models.UniqueConstraint(fields=["holder", "minute"], name="lifecycle_event_quota_once")
        ]

    def __str__(self) -> str:
        return f"{self.holder}: {self.events} events in the minute from {self.minute:%H:%M}"
